"""`[voice]`: text-to-speech and speech-to-text providers.

Every provider table has `enabled` (default true), as in Moltis's `schema/voice.rs`."""


from typing import Annotated, Any, Literal

import msgspec

from ledger.core.secret_refs import Secret
from ledger.schema.base import Section, UInt32, choices, expected

__all__ = [
    "CoquiTtsConfig",
    "DeepgramSttConfig",
    "ElevenLabsSttConfig",
    "ElevenLabsTtsConfig",
    "GoogleSttConfig",
    "GoogleTtsConfig",
    "GroqSttConfig",
    "MistralSttConfig",
    "OpenAiTtsConfig",
    "PiperTtsConfig",
    "SherpaOnnxSttConfig",
    "SttConfig",
    "TtsConfig",
    "VoiceConfig",
    "VoxtralLocalSttConfig",
    "WhisperCliSttConfig",
    "WhisperLocalSttConfig",
    "WhisperSttConfig",
]


class ElevenLabsTtsConfig(Section):
    """`[voice.tts.elevenlabs]`."""

    enabled: bool = True
    api_key: Secret | None = None
    voice_id: str | None = None
    model: str | None = None


class OpenAiTtsConfig(Section):
    """`[voice.tts.openai]`."""

    enabled: bool = True
    api_key: Secret | None = None
    base_url: str | None = None
    voice: str | None = None
    model: str | None = None


class GoogleTtsConfig(Section):
    """`[voice.tts.google]`: Google Cloud TTS, or Gemini TTS with a `gemini-*` model."""

    enabled: bool = True
    api_key: Secret | None = None
    voice: str | None = None
    model: str | None = None
    language_code: str | None = None
    speaking_rate: Annotated[float, expected(0.25, 4.0)] | None = None  # Rust Option<f32>
    pitch: Annotated[float, expected(-20.0, 20.0)] | None = None


class PiperTtsConfig(Section):
    """`[voice.tts.piper]`: local Piper."""

    enabled: bool = True
    binary_path: str | None = None
    model_path: str | None = None
    config_path: str | None = None
    speaker_id: UInt32 | None = None
    length_scale: float | None = None


class CoquiTtsConfig(Section):
    """`[voice.tts.coqui]`: a local Coqui TTS server."""

    enabled: bool = True
    endpoint: str = "http://localhost:5002"
    model: str | None = None
    speaker: str | None = None
    language: str | None = None
    # Known to Moltis's `config check` (validate/schema_map.rs), not to its struct: Moltis
    # loads them without complaint, so they are accepted and kept.
    base_url: str | None = None
    voice_id: str | None = None


class TtsConfig(Section):
    """`[voice.tts]`: text-to-speech."""

    enabled: bool = True
    # Absent: the first configured provider. Moltis's `Option<VoiceTtsProvider>` refuses
    # any other name; older releases (a Rust `String`) saved `provider = ""`, so text is
    # kept and `check` warns about names outside the enumeration.
    provider: Annotated[str, choices("elevenlabs", "openai", "google", "piper",
                                     "coqui")] | None = None
    # UI allowlist; empty shows all.
    providers: list[str] = msgspec.field(default_factory=list)
    elevenlabs: ElevenLabsTtsConfig = msgspec.field(default_factory=ElevenLabsTtsConfig)
    openai: OpenAiTtsConfig = msgspec.field(default_factory=OpenAiTtsConfig)
    google: GoogleTtsConfig = msgspec.field(default_factory=GoogleTtsConfig)
    piper: PiperTtsConfig = msgspec.field(default_factory=PiperTtsConfig)
    coqui: CoquiTtsConfig = msgspec.field(default_factory=CoquiTtsConfig)


class WhisperSttConfig(Section):
    """`[voice.stt.whisper]`: OpenAI Whisper or a compatible server."""

    enabled: bool = True
    api_key: Secret | None = None
    base_url: str | None = None
    model: str | None = None
    language: str | None = None


class GroqSttConfig(Section):
    """`[voice.stt.groq]`."""

    enabled: bool = True
    api_key: Secret | None = None
    model: str | None = None
    language: str | None = None


class DeepgramSttConfig(Section):
    """`[voice.stt.deepgram]`."""

    enabled: bool = True
    api_key: Secret | None = None
    model: str | None = None
    language: str | None = None
    smart_format: bool = False


class GoogleSttConfig(Section):
    """`[voice.stt.google]`: Google Cloud Speech-to-Text."""

    enabled: bool = True
    api_key: Secret | None = None
    # A path, not the credentials themselves.
    service_account_json: str | None = None
    language: str | None = None
    model: str | None = None
    # Known to Moltis's `config check` (schema_map.rs) only; accepted and kept.
    language_code: str | None = None


class MistralSttConfig(Section):
    """`[voice.stt.mistral]`: Voxtral Transcribe."""

    enabled: bool = True
    api_key: Secret | None = None
    model: str | None = None
    language: str | None = None


class ElevenLabsSttConfig(Section):
    """`[voice.stt.elevenlabs]`: ElevenLabs Scribe."""

    enabled: bool = True
    api_key: Secret | None = None
    model: str | None = None
    language: str | None = None


class VoxtralLocalSttConfig(Section):
    """`[voice.stt.voxtral_local]`: a local vLLM server."""

    enabled: bool = True
    endpoint: str = "http://localhost:8000"
    model: str | None = None
    language: str | None = None
    # Known to Moltis's `config check` (schema_map.rs) only; accepted and kept.
    base_url: str | None = None


class WhisperLocalSttConfig(Section):
    """`[voice.stt.whisper_local]`: a local OpenAI-compatible transcription server."""

    enabled: bool = True
    endpoint: str = "http://localhost:8080"
    model: str | None = None
    language: str | None = None


class WhisperCliSttConfig(Section):
    """`[voice.stt.whisper_cli]`: whisper.cpp."""

    enabled: bool = True
    binary_path: str | None = None
    model_path: str | None = None
    language: str | None = None


class SherpaOnnxSttConfig(Section):
    """`[voice.stt.sherpa_onnx]`: offline sherpa-onnx."""

    enabled: bool = True
    binary_path: str | None = None
    model_dir: str | None = None
    language: str | None = None
    # Known to Moltis's `config check` (schema_map.rs) only: its loader ignores the key,
    # so any value loads (review r12: typed, a float refused the whole file)
    sample_rate: Any = None


class SttConfig(Section):
    """`[voice.stt]`: speech-to-text."""

    enabled: bool = True
    # Absent: the first configured provider. "elevenlabs" is Moltis's alias of "elevenlabs-stt".
    provider: (
        Literal[
            "whisper",
            "groq",
            "deepgram",
            "google",
            "mistral",
            "elevenlabs-stt",
            "elevenlabs",
            "voxtral-local",
            "whisper-local",
            "whisper-cli",
            "sherpa-onnx",
        ]
        | None
    ) = None
    providers: list[str] = msgspec.field(default_factory=list)
    whisper: WhisperSttConfig = msgspec.field(default_factory=WhisperSttConfig)
    groq: GroqSttConfig = msgspec.field(default_factory=GroqSttConfig)
    deepgram: DeepgramSttConfig = msgspec.field(default_factory=DeepgramSttConfig)
    google: GoogleSttConfig = msgspec.field(default_factory=GoogleSttConfig)
    mistral: MistralSttConfig = msgspec.field(default_factory=MistralSttConfig)
    elevenlabs: ElevenLabsSttConfig = msgspec.field(default_factory=ElevenLabsSttConfig)
    voxtral_local: VoxtralLocalSttConfig = msgspec.field(default_factory=VoxtralLocalSttConfig)
    whisper_local: WhisperLocalSttConfig = msgspec.field(default_factory=WhisperLocalSttConfig)
    whisper_cli: WhisperCliSttConfig = msgspec.field(default_factory=WhisperCliSttConfig)
    sherpa_onnx: SherpaOnnxSttConfig = msgspec.field(default_factory=SherpaOnnxSttConfig)


class VoiceConfig(Section):
    """`[voice]`. Moltis migrates voice API keys out of moltis.toml into its key store."""

    tts: TtsConfig = msgspec.field(default_factory=TtsConfig)
    stt: SttConfig = msgspec.field(default_factory=SttConfig)
