"""Fields Moltis types `Option<…>` are optional in the typed view too, with Moltis's
default: a gateway reading the typed view must tell "not set" from an empty value where
Moltis does (crates/config/src/schema/agents.rs `PresetSkillPolicy`: `None` means no
restriction, `Some(vec![])` means no skill at all), and get Moltis's default where it
has one (`HomeAssistantAccountConfig::timeout_seconds` is a `u64` defaulting to 10)."""

from __future__ import annotations

from typing import Any

from ledger.core.secret_refs import Secret  # noqa: F401 (the typed view holds them)
from ledger.schema import MoltisConfig
from ledger.typed.check import check
from ledger.typed.convert import to_typed


def _typed(raw: dict[str, Any]) -> MoltisConfig:
    return to_typed(raw)


def test_a_preset_skill_policy_tells_unset_from_empty() -> None:
    cfg = _typed({"agents": {"presets": {
        "open": {"skills": {}},
        "closed": {"skills": {"allow": []}}}}})
    assert cfg.agents.presets["open"].skills.allow is None  # no restriction
    assert cfg.agents.presets["open"].skills.deny is None
    assert cfg.agents.presets["closed"].skills.allow == []  # no skill allowed


def test_external_agent_options_are_unset_by_default() -> None:
    cfg = _typed({"external_agents": {"agents": {"claude": {"binary": "claude"}}}})
    agent = cfg.external_agents.agents["claude"]
    assert agent.args is None and agent.use_tmux is None  # Option<Vec<String>>, Option<bool>


def test_moltis_defaults_of_options_and_timeouts() -> None:
    cfg = _typed({"home_assistant": {"instances": {"home": {"url": "http://ha:8123"}}}})
    assert cfg.home_assistant.instances["home"].timeout_seconds == 10
    assert cfg.voice.tts.provider is None  # Option<VoiceTtsProvider>: the first configured
    assert cfg.cron.session_retention_days == 7  # Option<u64> defaulting to Some(7)
    assert cfg.agents.default_preset == "research"  # Option<String>, Some("research")


def test_a_tts_provider_moltis_does_not_know_is_reported() -> None:
    problems = check({"voice": {"tts": {"provider": "elevenlab"}}})
    assert [(p.path, p.severity) for p in problems] == [("voice.tts.provider", "warning")]
    assert "elevenlabs" in problems[0].message
    assert check({"voice": {"tts": {"provider": "openai"}}}) == []
