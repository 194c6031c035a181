"""Chat behaviour, memory and outside services: chat, auxiliary models, memory,
instrumentation, phone, CalDAV, Home Assistant, webhooks and the code index."""


from typing import Annotated, ClassVar, Literal

import msgspec

from ledger.core.secret_refs import Secret
from ledger.schema.base import Fraction, PositiveInt, Section, UInt, UInt32, choices

__all__ = [
    "AuxiliaryConfig",
    "CalDavAccountConfig",
    "CalDavConfig",
    "ChatConfig",
    "CodeIndexConfig",
    "CompactionConfig",
    "DatadogConfig",
    "FeedbackConfig",
    "HomeAssistantConfig",
    "HomeAssistantInstanceConfig",
    "InstrumentationConfig",
    "LangfuseConfig",
    "MemoryConfig",
    "OtlpConfig",
    "PhoneConfig",
    "PlivoConfig",
    "QmdCollectionConfig",
    "QmdConfig",
    "TelnyxConfig",
    "TwilioConfig",
    "WebhookRateLimitConfig",
    "WebhooksConfig",
]

_ContentCapture = Literal["full", "metadata_only", "none"]


class CompactionConfig(Section):
    """`[chat.compaction]`: how a full context window is shrunk."""

    mode: Literal["deterministic", "recency_preserving", "structured", "llm_replace"] = (
        "deterministic"
    )
    # Unbounded here: Moltis accepts any value and falls back to the default (with a
    # warning) outside 0.1..0.95, so a type bound would reject files Moltis loads.
    threshold_percent: float = 0.95
    protect_head: UInt32 = 3
    protect_tail_min: UInt32 = 20
    tail_budget_ratio: float = 0.20
    tool_prune_char_threshold: UInt32 = 200
    summary_model: str | None = None
    max_summary_tokens: UInt32 = 4096
    show_settings_hint: bool = True


class ChatConfig(Section):
    """`[chat]`: session behaviour."""

    auto_title: bool = True
    message_queue_mode: Literal["followup", "collect"] = "followup"
    prompt_memory_mode: Literal["live-reload", "frozen-at-session-start"] = "live-reload"
    workspace_file_max_chars: UInt = 32_000
    context_command: str | None = None
    priority_models: list[str] = msgspec.field(default_factory=list)
    # Legacy allowlist, ignored by current Moltis but still accepted.
    allowed_models: list[str] = msgspec.field(default_factory=list)
    compaction: CompactionConfig = msgspec.field(default_factory=CompactionConfig)


class AuxiliaryConfig(Section):
    """`[auxiliary]`: cheaper models for side tasks; absent means the session's model."""

    compaction: str | None = None
    title_generation: str | None = None
    vision: str | None = None


class QmdCollectionConfig(Section):
    """`[memory.qmd.collections.<name>]`."""

    paths: list[str] = msgspec.field(default_factory=list)
    globs: list[str] = msgspec.field(default_factory=list)


class QmdConfig(Section):
    """`[memory.qmd]`: the QMD CLI backend."""

    command: str | None = None
    collections: dict[str, QmdCollectionConfig] = msgspec.field(default_factory=dict)
    max_results: UInt | None = None
    timeout_ms: UInt | None = None


class MemoryConfig(Section):
    """`[memory]`: long-term memory and its embedding provider."""

    __aliases__: ClassVar[dict[str, str]] = {
        "embedding_provider": "provider",
        "embedding_base_url": "base_url",
        "embedding_model": "model",
        "embedding_api_key": "api_key",
        "embedding_dimensions": "embedding_dimension",
    }

    style: Literal["hybrid", "prompt-only", "search-only", "off"] = "hybrid"
    agent_write_mode: Literal["hybrid", "prompt-only", "search-only", "off"] = "hybrid"
    user_profile_write_mode: Literal["explicit-and-auto", "explicit-only", "off"] = (
        "explicit-and-auto"
    )
    backend: Literal["builtin", "qmd", "zvec"] = "builtin"
    # Absent (or "auto") means auto-detect from the configured providers.
    provider: Literal["auto", "local", "ollama", "openai", "custom"] | None = None
    disable_rag: bool = False
    base_url: str | None = None
    model: str | None = None
    api_key: Secret | None = None
    # Moltis's field name (`embedding_dimension`, alias `embedding_dimensions`).
    embedding_dimension: UInt32 | None = None
    citations: Literal["on", "off", "auto"] = "auto"
    llm_reranking: bool = False
    search_merge_strategy: Literal["rrf", "linear"] = "rrf"
    # Moltis still reads the legacy boolean form (true = "on-new-or-reset").
    session_export: Literal["off", "on-new-or-reset"] | bool = "on-new-or-reset"
    qmd: QmdConfig = msgspec.field(default_factory=QmdConfig)
    enable_prefetch: bool = True
    prefetch_limit: UInt = 3
    auto_extract_interval: UInt32 = 5
    enable_session_summary: bool = True
    # Zvec only; absent means "memory.zvec" in the data directory.
    db_path: str | None = None
    vector_weight: Fraction = 0.7
    keyword_weight: Fraction = 0.3


class LangfuseConfig(Section):
    """`[instrumentation.langfuse]`: full-conversation LLM observability."""

    enabled: bool = False
    host: str = "https://cloud.langfuse.com"
    public_key: str = ""
    secret_key: Secret | None = None
    capture_input: bool = True
    capture_output: bool = True
    capture_tool_io: bool = True
    timeout_secs: PositiveInt = 10


class OtlpConfig(Section):
    """`[instrumentation.otlp]`: a generic OTLP/HTTP trace exporter."""

    enabled: bool = False
    endpoint: str = ""
    # Authentication headers (`Authorization = "Bearer ..."`, API keys).
    headers: dict[str, Secret] = msgspec.field(default_factory=dict)
    content: _ContentCapture = "metadata_only"
    emit_user_id: bool = False
    timeout_secs: PositiveInt = 10


class DatadogConfig(Section):
    """`[instrumentation.datadog]`: Datadog through its OTLP intake."""

    enabled: bool = False
    endpoint: str = "http://localhost:4318/v1/traces"
    api_key: Secret | None = None
    service: str = "moltis"
    content: _ContentCapture = "metadata_only"
    timeout_secs: PositiveInt = 10


class FeedbackConfig(Section):
    """`[instrumentation.feedback]`: reaction thumbs as quality scores."""

    enabled: bool = True
    # Empty lists mean the built-in emoji vocabulary.
    positive: list[str] = msgspec.field(default_factory=list)
    negative: list[str] = msgspec.field(default_factory=list)
    link_retention_days: UInt32 = 30


class InstrumentationConfig(Section):
    """`[instrumentation]`: exports of completed agent runs; off by default."""

    enabled: bool = False
    environment: str = "production"
    # Absent: the running Moltis version.
    release: str | None = None
    sample_rate: Fraction = 1.0
    redact: list[str] = msgspec.field(default_factory=list)
    queue_capacity: PositiveInt = 10_000
    flush_interval_ms: PositiveInt = 5_000
    max_batch_bytes: PositiveInt = 3_000_000
    langfuse: LangfuseConfig = msgspec.field(default_factory=LangfuseConfig)
    otlp: OtlpConfig = msgspec.field(default_factory=OtlpConfig)
    datadog: DatadogConfig = msgspec.field(default_factory=DatadogConfig)
    feedback: FeedbackConfig = msgspec.field(default_factory=FeedbackConfig)


class TwilioConfig(Section):
    """`[phone.twilio]`."""

    account_sid: Secret | None = None
    auth_token: Secret | None = None
    from_number: str | None = None
    webhook_url: str | None = None


class TelnyxConfig(Section):
    """`[phone.telnyx]`."""

    api_key: Secret | None = None
    connection_id: str | None = None
    # Ed25519 key for webhook signatures: public by design.
    public_key: str | None = None
    from_number: str | None = None
    webhook_url: str | None = None


class PlivoConfig(Section):
    """`[phone.plivo]`."""

    # Moltis stores the Auth ID as plain text; it is the account half of the credential
    # pair (like Twilio's account SID, which Moltis does treat as secret), so mark it.
    auth_id: Secret | None = None
    auth_token: Secret | None = None
    from_number: str | None = None
    webhook_url: str | None = None


class PhoneConfig(Section):
    """`[phone]`: telephony providers for phone calls."""

    enabled: bool = False
    # Empty means none selected; kept open like the Rust `String`.
    provider: str = ""
    providers: list[str] = msgspec.field(default_factory=list)
    inbound_policy: Annotated[str, choices("disabled", "allowlist", "open")] = "disabled"
    allowlist: list[str] = msgspec.field(default_factory=list)
    max_duration_secs: UInt = 3600
    twilio: TwilioConfig = msgspec.field(default_factory=TwilioConfig)
    telnyx: TelnyxConfig = msgspec.field(default_factory=TelnyxConfig)
    plivo: PlivoConfig = msgspec.field(default_factory=PlivoConfig)


class CalDavAccountConfig(Section):
    """`[caldav.accounts.<name>]`."""

    url: str | None = None
    username: str | None = None
    password: Secret | None = None
    # A hint: "fastmail", "icloud" or "generic".
    provider: str | None = None
    timeout_seconds: UInt = 30


class CalDavConfig(Section):
    """`[caldav]`: calendar accounts."""

    enabled: bool = False
    default_account: str | None = None
    accounts: dict[str, CalDavAccountConfig] = msgspec.field(default_factory=dict)


class HomeAssistantInstanceConfig(Section):
    """`[home_assistant.instances.<name>]`."""

    url: str | None = None
    token: Secret | None = None
    timeout_seconds: UInt = 10


class HomeAssistantConfig(Section):
    """`[home_assistant]`: Home Assistant instances."""

    enabled: bool = False
    default_instance: str | None = None
    instances: dict[str, HomeAssistantInstanceConfig] = msgspec.field(default_factory=dict)


class WebhookRateLimitConfig(Section):
    """`[webhooks.rate_limit]`: per-account limits; absent numbers use channel defaults."""

    enabled: bool = True
    requests_per_minute: UInt32 | None = None
    burst: UInt32 | None = None
    cleanup_interval_secs: UInt = 300


class WebhooksConfig(Section):
    """`[webhooks]`: channel webhook middleware."""

    rate_limit: WebhookRateLimitConfig = msgspec.field(default_factory=WebhookRateLimitConfig)


class CodeIndexConfig(Section):
    """`[code_index]`: codebase indexing for the codebase_* tools."""

    enabled: bool = True
    # Empty means Moltis's built-in list of 50+ extensions.
    extensions: list[str] = msgspec.field(default_factory=list)
    max_file_size: str = "1MB"
    skip_binary: bool = True
    skip_paths: list[str] = msgspec.field(default_factory=list)
    data_dir: str | None = None
