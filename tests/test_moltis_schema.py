"""The schema follows Moltis's types and defaults: what Moltis loads is never refused,
and `check` warns only where Moltis itself would (issue 15, "real configs refused")."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from ledger.schema.introspect import field_at
from ledger.typed.check import check
from ledger.typed.convert import to_typed


def _problems(text: str) -> list[tuple[str, str]]:
    return [(p.kind, p.path) for p in check(tomllib.loads(text))]


def test_sandbox_network_is_a_string_defaulting_to_empty() -> None:
    # Moltis: `network: String`, default "" (empty = the legacy no_network flag decides)
    assert to_typed({}).tools.exec.sandbox.network == ""
    raw = tomllib.loads('[tools.exec.sandbox]\nnetwork = ""\n')
    assert to_typed(raw).tools.exec.sandbox.network == ""
    assert check(raw) == []


def test_unknown_sandbox_network_policy_is_a_warning_not_a_refusal() -> None:
    raw = tomllib.loads('[tools.exec.sandbox]\nnetwork = "open"\n')
    assert to_typed(raw).tools.exec.sandbox.network == "open"  # Moltis loads it
    problems = check(raw)
    assert [(p.kind, p.path, p.severity) for p in problems] == [
        ("invalid-value", "tools.exec.sandbox.network", "warning")]
    assert "blocked, trusted, bypass" in problems[0].message


def test_channel_sections_hold_any_value() -> None:
    raw = tomllib.loads("[channels.telegram]\nenabled = true\n[channels.matrix]\nx = 1\n")
    cfg = to_typed(raw)
    assert cfg.channels.telegram == {"enabled": True}
    assert check(raw) == []


@pytest.mark.parametrize("path", [
    *[f"voice.tts.{p}.enabled" for p in ("elevenlabs", "openai", "google", "piper", "coqui")],
    *[f"voice.stt.{p}.enabled" for p in (
        "whisper", "groq", "deepgram", "google", "mistral", "elevenlabs", "voxtral_local",
        "whisper_local", "whisper_cli", "sherpa_onnx")],
    "memory.embedding_dimension", "memory.embedding_dimensions",
    "voice.tts.coqui.base_url", "voice.tts.coqui.voice_id", "voice.stt.google.language_code",
    "voice.stt.sherpa_onnx.sample_rate", "voice.stt.voxtral_local.base_url",
    "agents.presets.x.tool_controls.tool_choice.type",
    "agents.presets.x.tool_controls.tool_choice.name",
])
def test_keys_moltis_knows_are_known(path: str) -> None:
    assert field_at(tuple(path.split("."))) is not None, path


def test_the_fields_of_the_issue_load_and_check_clean() -> None:
    text = """
[memory]
embedding_dimensions = 768
[voice.tts.coqui]
enabled = false
base_url = "http://localhost:5002"
voice_id = "v1"
[voice.stt.google]
enabled = false
language_code = "en-US"
[voice.stt.sherpa_onnx]
sample_rate = 16000
[voice.stt.voxtral_local]
base_url = "http://localhost:8000"
[agents.presets.coder.tool_controls]
active_tools = ["exec"]
[agents.presets.coder.tool_controls.tool_choice]
type = "tool"
name = "exec"
"""
    assert _problems(text) == []
    cfg = to_typed(tomllib.loads(text))
    assert cfg.memory.embedding_dimension == 768
    assert cfg.voice.tts.coqui.enabled is False
    assert cfg.voice.tts.openai.enabled is True  # Moltis's default
    assert cfg.voice.stt.google.language_code == "en-US"
    assert cfg.voice.stt.sherpa_onnx.sample_rate == 16000
    choice = cfg.agents.presets["coder"].tool_controls.tool_choice
    assert choice is not None
    assert (choice.type, choice.name) == ("tool", "exec")


def test_a_bad_tool_choice_is_what_moltis_refuses() -> None:
    # serde's internally tagged enum: auto/any/none/tool
    raw = tomllib.loads('[agents.presets.a.tool_controls.tool_choice]\ntype = "sometimes"\n')
    kinds = [(p.kind, p.path) for p in check(raw)]
    assert ("invalid-value", "agents.presets.a.tool_controls.tool_choice.type") in kinds


def test_effective_view_normalizes_key_store_model_names_raw_keeps_them() -> None:
    from projections.provider_view import effective_providers, keys_view

    doc: dict[str, Any] = {"openai": {"apiKey": "sk", "models": [
        "openai::gpt-5.2", " anthropic/claude-sonnet-4-5 ", "gpt-5.2", "  ",
        "openai::o3@reasoning-high"]}}
    keys = keys_view(doc)
    assert keys["openai"].models[0] == "openai::gpt-5.2"  # raw as written
    eff = effective_providers({}, keys, {})
    assert eff["openai"].models == ["gpt-5.2", "anthropic/claude-sonnet-4-5", "o3"]


def test_check_reports_every_invalid_value_not_only_the_first() -> None:
    raw = tomllib.loads('[server]\nport = "abc"\n[tools]\nagent_timeout_secs = -5\n'
                        '[tools.exec]\nmax_output_bytes = "lots"\n')
    invalid = sorted(p.path for p in check(raw) if p.kind == "invalid-value")
    assert invalid == ["server.port", "tools.agent_timeout_secs", "tools.exec.max_output_bytes"]


@pytest.mark.parametrize(("path", "value"), [
    ("tools.exec.approval_mode", "sometimes"),
    ("tools.exec.security_level", "paranoid"),
    ("tools.exec.host", "docker-host"),
    ("tools.exec.sandbox.mode", "maybe"),
    ("tools.exec.sandbox.scope", "forever"),
    ("tools.exec.sandbox.workspace_mount", "rwx"),
    ("tailscale.mode", "magic"),
    ("netbird.mode", "funnel"),
    ("phone.inbound_policy", "everyone"),
    ("mcp.servers.fs.transport", "carrier-pigeon"),
])
def test_rust_string_fields_load_any_text_and_check_warns(path: str, value: str) -> None:
    *parents, leaf = path.split(".")
    raw: dict[str, Any] = {}
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    to_typed(raw)  # Moltis types these as `String`: it loads them, so must we
    problems = [(p.kind, p.path, p.severity) for p in check(raw)]
    assert problems == [("invalid-value", path, "warning")]


def test_check_reports_mask_placeholders_as_errors() -> None:
    raw = tomllib.loads('[providers.openai]\napi_key = "<secret fp:0123456789abcdef>"\n')
    problems = [(p.kind, p.path, p.severity) for p in check(raw)]
    assert problems == [("masked-secret", "providers.openai.api_key", "error")]
