"""The schema mirrors Moltis's `MoltisConfig`: defaults, fixtures, secret marking, encoding."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

import ledger.schema as schema
from ledger.core.secret_refs import Secret
from ledger.errors import ConfigValidationError
from ledger.schema import (
    FREEFORM_SECRETS,
    KNOWN_PROVIDERS,
    ChannelsConfig,
    GeoLocation,
    HookConfig,
    HooksConfig,
    MoltisConfig,
    ProviderConfig,
    ProvidersConfig,
    Section,
    ServerConfig,
    is_provider_name,
)
from ledger.schema.introspect import secret_patterns
from ledger.typed.convert import to_typed
from tests.conftest import FIXTURES


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def load(path: Path) -> MoltisConfig:
    return to_typed(tomllib.loads(path.read_text(encoding="utf-8")))


# ── walking the schema types ────────────────────────────────────────────────────────────


def _struct_types(t: mi.Type, seen: dict[type, mi.StructType]) -> None:
    if isinstance(t, mi.StructType):
        if t.cls in seen:
            return
        seen[t.cls] = t
        for f in t.fields:
            _struct_types(f.type, seen)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            _struct_types(member, seen)
    elif isinstance(t, mi.DictType):
        _struct_types(t.value_type, seen)
    elif isinstance(t, mi.ListType):
        _struct_types(t.item_type, seen)


def all_structs() -> dict[type, mi.StructType]:
    seen: dict[type, mi.StructType] = {}
    _struct_types(mi.type_info(MoltisConfig), seen)
    return seen


def secret_paths(t: mi.Type, prefix: str = "") -> set[str]:
    """Dotted TOML paths typed Secret; `*` for map keys, flattened maps appear as `*`."""
    join = (lambda key: f"{prefix}.{key}") if prefix else (lambda key: key)
    if isinstance(t, mi.CustomType):
        return {prefix} if t.cls is Secret else set()
    if isinstance(t, mi.UnionType):
        return set().union(*(secret_paths(m, prefix) for m in t.types))
    if isinstance(t, mi.DictType):
        return secret_paths(t.value_type, join("*"))
    if isinstance(t, mi.ListType):
        return secret_paths(t.item_type, f"{prefix}[]")
    if isinstance(t, mi.StructType):
        flatten = getattr(t.cls, "__flatten__", None)
        found: set[str] = set()
        for f in t.fields:
            if f.name == flatten:
                found |= secret_paths(f.type, prefix)
            else:
                found |= secret_paths(f.type, join(f.encode_name))
        return found
    return set()


# ── defaults ────────────────────────────────────────────────────────────────────────────


def test_defaults_match_moltis() -> None:
    cfg = MoltisConfig()
    assert cfg.server.bind == "127.0.0.1"
    assert cfg.server.port == 0
    assert cfg.server.rpc_timeout_ms == 5000
    assert cfg.server.db_pool_max_connections == 5
    assert cfg.server.terminal_enabled is True
    assert cfg.tools.agent_timeout_secs == 600
    assert cfg.tools.agent_max_iterations == 25
    assert cfg.tools.exec.approval_mode == "on-miss"
    assert cfg.tools.exec.sandbox.mode == "all"
    assert cfg.tools.exec.sandbox.backend == "auto"
    assert cfg.mcp.request_timeout_secs == 30
    assert cfg.agents.default_preset == "research"
    assert cfg.heartbeat.every == "30m"
    assert cfg.tailscale.mode == "off"
    assert cfg.netbird.mode == "off"
    assert cfg.auth.vault_enabled is True
    assert cfg.auth.disabled is False
    assert cfg.failover.enabled is True
    assert cfg.external_agents.enabled is True
    assert cfg.chat.auto_title is True
    assert cfg.providers.offered == []
    assert cfg.providers.show_legacy_models is False
    assert cfg.graphql.enabled is True  # the reference wins over the template's comment
    assert cfg.tls.enabled is True
    assert cfg.metrics.enabled is True
    assert cfg.instrumentation.enabled is False
    assert cfg.skills.enabled is True
    assert cfg.hooks is None
    assert cfg.channels.offered == [
        "telegram",
        "whatsapp",
        "msteams",
        "discord",
        "slack",
        "matrix",
        "nostr",
        "signal",
    ]
    assert cfg.config.backend == "file"
    assert cfg.upstream_proxy is None
    assert cfg.env == {}


def test_provider_entry_defaults() -> None:
    entry = ProviderConfig()
    assert entry.enabled is True
    assert entry.fetch_models is True
    assert entry.stream_transport == "sse"
    assert entry.wire_api == "chat-completions"
    assert entry.tool_mode == "auto"
    assert entry.cache_retention == "short"
    assert HookConfig(name="h", command="c", events=[]).timeout == 10


def test_default_factories_are_not_shared() -> None:
    a, b = MoltisConfig(), MoltisConfig()
    a.server.port = 1
    a.providers["openai"] = ProviderConfig()
    a.channels.offered.append("telephony")
    assert b.server.port == 0
    assert "openai" not in b.providers
    assert "telephony" not in b.channels.offered


# ── fixtures ────────────────────────────────────────────────────────────────────────────


def test_docs_example(fixtures: Path) -> None:
    cfg = load(fixtures / "docs-example.moltis.toml")
    assert cfg.server.port == 13131
    assert cfg.server.bind == "0.0.0.0"
    assert cfg.identity.name == "Atlas"
    assert cfg.tools.agent_timeout_secs == 600
    assert cfg.tools.agent_max_iterations == 25
    assert cfg.providers.offered == ["anthropic", "openai", "gemini"]
    assert cfg.providers.entries == {}
    sandbox = cfg.tools.exec.sandbox
    assert sandbox.mode == "all"
    assert sandbox.scope == "session"
    assert sandbox.workspace_mount == "ro"
    assert sandbox.home_persistence == "session"
    assert sandbox.shared_home_dir is None  # commented out in the file
    assert sandbox.backend == "auto"
    assert sandbox.no_network is True
    assert sandbox.packages == ["curl", "git", "jq", "python3", "nodejs", "golang-go"]
    assert cfg.memory.backend == "builtin"
    assert cfg.memory.provider == "openai"
    assert cfg.memory.model == "text-embedding-3-small"
    assert cfg.auth.disabled is False
    assert cfg.hooks is not None
    assert len(cfg.hooks.hooks) == 1
    hook = cfg.hooks.hooks[0]
    assert hook.name == "audit-log"
    assert hook.command == "./hooks/audit.sh"
    assert hook.events == ["BeforeToolCall"]
    assert hook.timeout == 5


def test_template_is_defaults_plus_port(fixtures: Path) -> None:
    raw = tomllib.loads((fixtures / "template.moltis.toml").read_text(encoding="utf-8"))
    assert raw == {"server": {"port": 13131}, "external_agents": {}}
    cfg = to_typed(raw)
    assert cfg.server.port == 13131
    assert cfg == MoltisConfig(server=ServerConfig(port=13131))


# ── secrets ─────────────────────────────────────────────────────────────────────────────

EXPECTED_SECRET_PATHS = {
    # (S) in the reference
    "ngrok.authtoken",
    "cloudflare_tunnel.token",
    "providers.*.api_key",
    "tools.exec.sandbox.vercel_token",
    "tools.exec.sandbox.daytona_api_key",
    "tools.web.search.api_key",
    "tools.web.search.perplexity.api_key",
    "tools.web.firecrawl.api_key",
    "mcp.servers.*.env.*",
    "mcp.servers.*.oauth.client_secret",
    "instrumentation.langfuse.secret_key",
    "instrumentation.datadog.api_key",
    "memory.api_key",
    "voice.tts.elevenlabs.api_key",
    "voice.tts.openai.api_key",
    "voice.tts.google.api_key",
    "voice.stt.whisper.api_key",
    "voice.stt.groq.api_key",
    "voice.stt.deepgram.api_key",
    "voice.stt.google.api_key",
    "voice.stt.mistral.api_key",
    "voice.stt.elevenlabs.api_key",
    "phone.twilio.account_sid",
    "phone.twilio.auth_token",
    "phone.telnyx.api_key",
    "phone.plivo.auth_token",
    "caldav.accounts.*.password",
    "home_assistant.instances.*.token",
    "upstream_proxy",
    # carry credentials although Moltis types them as plain strings
    "env.*",
    "external_agents.agents.*.env.*",
    "mcp.servers.*.headers.*",
    "instrumentation.otlp.headers.*",
    "phone.plivo.auth_id",
    # this ledger's own section
    "config.dsn",
}


def test_secret_fields_are_marked_by_type() -> None:
    assert secret_paths(mi.type_info(MoltisConfig)) == EXPECTED_SECRET_PATHS


def test_secret_values_convert_to_secret() -> None:
    cfg = to_typed(
        {
            "upstream_proxy": "http://u:p@proxy:1080",
            "env": {"BRAVE_API_KEY": "brave-1"},
            "providers": {"anthropic": {"api_key": "sk-ant-1"}},
            "mcp": {"servers": {"gh": {"headers": {"Authorization": "Bearer t"}}}},
        }
    )
    assert cfg.upstream_proxy == Secret("http://u:p@proxy:1080")
    assert cfg.env["BRAVE_API_KEY"].reveal() == "brave-1"
    entry = cfg.providers["anthropic"]
    assert entry.api_key is not None
    assert entry.api_key.reveal() == "sk-ant-1"
    assert "sk-ant-1" not in repr(cfg)
    assert cfg.mcp.servers["gh"].headers["Authorization"].reveal() == "Bearer t"


def test_freeform_secrets_point_into_channel_accounts() -> None:
    channel_fields = {f.encode_name for f in msgspec.structs.fields(ChannelsConfig)}
    assert FREEFORM_SECRETS
    for path in FREEFORM_SECRETS:
        assert path[0] == "channels"
        assert path[2] == "*"
        assert len(path) == 4
        # A named channel field, or an extra channel type that lands in `entries`.
        assert path[1] in channel_fields or path[1] == "matrix"
    assert ("channels", "slack", "*", "bot_token") in FREEFORM_SECRETS
    assert ("channels", "telegram", "*", "token") in FREEFORM_SECRETS


# ── conventions ─────────────────────────────────────────────────────────────────────────


def test_every_struct_follows_the_section_conventions() -> None:
    structs = all_structs()
    assert len(structs) > 80
    for cls, info in structs.items():
        assert issubclass(cls, Section), cls
        assert not info.forbid_unknown_fields, cls
        assert cls.__doc__, cls
        names = {f.name for f in info.fields}
        for old, new in getattr(cls, "__aliases__", {}).items():
            assert new in names, (cls, old)
            assert old not in names, (cls, old)
        flatten = getattr(cls, "__flatten__", None)
        if flatten is not None:
            field = next(f for f in info.fields if f.name == flatten)
            assert isinstance(field.type, mi.DictType), cls


def test_every_struct_is_exported() -> None:
    exported = set(schema.__all__)
    for cls in all_structs():
        assert cls.__name__ in exported, cls
    assert {"MoltisConfig", "Section", "KNOWN_PROVIDERS", "is_provider_name"} <= exported
    assert "FREEFORM_SECRETS" in exported
    for name in schema.__all__:
        assert hasattr(schema, name), name


def test_aliases_and_flattening() -> None:
    cfg = to_typed(
        {
            "providers": {
                "offered": ["ollama"],
                "ollama": {"url": "http://localhost:11434", "models": ["llama3.2"]},
                "custom-together-ai": {"base_url": "https://api.together.ai/v1"},
            },
            "memory": {
                "embedding_provider": "ollama",
                "embedding_base_url": "http://localhost:11434/v1",
                "embedding_model": "nomic-embed-text",
                "embedding_api_key": "k",
                "embedding_dimensions": 768,
            },
            "channels": {
                "slack": {"my-bot": {"bot_token": "xoxb-1"}},
                "matrix": {"home": {"access_token": "syt-1"}},
            },
        }
    )
    assert cfg.providers.offered == ["ollama"]
    assert set(cfg.providers) == {"ollama", "custom-together-ai"}
    assert cfg.providers["ollama"].base_url == "http://localhost:11434"
    assert cfg.providers["ollama"].models == ["llama3.2"]
    memory = cfg.memory
    assert (memory.provider, memory.model, memory.embedding_dimension) == (
        "ollama", "nomic-embed-text", 768)
    assert memory.base_url == "http://localhost:11434/v1"
    assert memory.api_key == Secret("k")
    assert cfg.channels.slack == {"my-bot": {"bot_token": "xoxb-1"}}
    assert cfg.channels.entries == {"matrix": {"home": {"access_token": "syt-1"}}}


def test_providers_mapping_helpers() -> None:
    providers = ProvidersConfig()
    assert "openai" not in providers
    assert providers.get("openai") is None
    fallback = ProviderConfig(enabled=False)
    assert providers.get("openai", fallback) is fallback
    providers["openai"] = ProviderConfig(models=["gpt-5"])
    assert "openai" in providers
    assert providers["openai"].models == ["gpt-5"]
    assert providers.entries["openai"] is providers["openai"]
    assert list(providers) == ["openai"]
    del providers["openai"]
    assert providers.entries == {}
    with pytest.raises(KeyError):
        providers["openai"]


def test_provider_names() -> None:
    template_list = {
        "anthropic", "openai", "gemini", "groq", "xai", "deepinfra", "deepseek", "fireworks",
        "mistral", "openrouter", "cerebras", "minimax", "moonshot", "zai", "zai-code", "venice",
        "nearai", "alibaba-coding", "ollama", "lmstudio", "local-llm", "openai-codex",
        "github-copilot", "kimi-code",
    }  # fmt: skip
    assert template_list <= KNOWN_PROVIDERS
    assert len(KNOWN_PROVIDERS) == 26
    assert all(is_provider_name(name) for name in KNOWN_PROVIDERS)
    assert is_provider_name("custom-together-ai")
    assert is_provider_name("custom-x1")
    for bad in ("custom-", "custom", "Custom-x", "custom-Together", "custom-a_b", "anthropicx", ""):
        assert not is_provider_name(bad), bad


# ── encoding and validation ─────────────────────────────────────────────────────────────


def _non_empty_leaves(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        found: set[str] = set()
        for key, item in value.items():
            found |= _non_empty_leaves(item, f"{prefix}.{key}" if prefix else key)
        return found
    return {prefix} if value not in ([], None) else set()


def test_default_config_encodes_small() -> None:
    encoded = msgspec.json.encode(MoltisConfig())
    assert len(encoded) < 1200  # about 80 empty tables; every default value is left out
    # Sections encode as `{}`; msgspec only omits values it can compare with the default,
    # and a non-empty default_factory list (channels.offered) is not one of them.
    assert _non_empty_leaves(msgspec.json.decode(encoded)) == {"channels.offered"}
    assert b"127.0.0.1" not in encoded


def test_round_trip_with_non_default_values() -> None:
    cfg = MoltisConfig()
    cfg.server.port = 13131
    cfg.identity.name = "Atlas"
    cfg.providers.offered = ["anthropic"]
    cfg.providers["ollama"] = ProviderConfig(base_url="http://localhost:11434", fetch_models=False)
    cfg.tools.exec.sandbox.packages = []
    cfg.tools.exec.sandbox.no_network = True
    cfg.memory.session_export = False
    cfg.user.location = GeoLocation(latitude=48.85, longitude=2.35, place="Paris")
    cfg.hooks = HooksConfig(hooks=[HookConfig(name="a", command="./a.sh", events=["X"])])
    cfg.channels.telegram["bot"] = {"token": "t", "allowlist": [1, 2]}
    encoded = msgspec.json.encode(cfg)
    assert b'"bind"' not in encoded
    assert b'"packages":[]' in encoded  # explicit empty list differs from absent
    assert msgspec.json.decode(encoded, type=MoltisConfig) == cfg


def test_wrong_type_names_the_path() -> None:
    with pytest.raises(ConfigValidationError) as err:
        to_typed({"server": {"port": "abc"}})
    assert err.value.path == "server.port"
    assert "Expected int, got str" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"server": {"port": 70000}}, "server.port"),
        ({"server": {"rpc_timeout_ms": -1}}, "server.rpc_timeout_ms"),
        ({"providers": {"openai": {"stream_transport": "grpc"}}},
         "providers.openai.stream_transport"),
        # (tools.exec.approval_mode is a Rust String: any text loads, `check` warns)
        ({"chat": {"message_queue_mode": "sometimes"}}, "chat.message_queue_mode"),
        # (instrumentation.sample_rate is a Rust f64: 1.5 loads, `check` warns; review r11)
        ({"instrumentation": {"sample_rate": "1.5"}}, "instrumentation.sample_rate"),
        ({"hooks": {"hooks": [{"name": "x"}]}}, "hooks.hooks.0"),
        ({"user": {"location": {"place": "Paris"}}}, "user.location"),
    ],
)
def test_out_of_range_and_closed_values_are_rejected(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigValidationError) as err:
        to_typed(raw)
    assert err.value.path == where


def test_unknown_keys_are_ignored_not_rejected() -> None:
    cfg = to_typed({"server": {"port": 1, "no_such_key": True}, "no_such_section": {"a": 1}})
    assert cfg == MoltisConfig(server=ServerConfig(port=1))


def test_ints_are_accepted_for_float_fields() -> None:
    cfg = to_typed({"tools": {"browser": {"device_scale_factor": 3}}})
    assert cfg.tools.browser.device_scale_factor == 3.0


def test_secret_patterns_cover_typed_and_freeform_secrets() -> None:
    patterns = set(secret_patterns())
    for expected in ("providers.*.api_key", "mcp.servers.*.env.*", "env.*",
                     "channels.slack.*.bot_token", "memory.embedding_api_key", "upstream_proxy"):
        assert expected in patterns
