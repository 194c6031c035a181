"""`[providers]` (LLM providers) and the model overrides shared with `[models]`."""


import re
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

import msgspec

from ledger.core.secret_refs import Secret
from ledger.schema.base import Section, UInt, UInt32, expected
from ledger.schema.tools import ToolPolicyConfig

__all__ = [
    "KNOWN_PROVIDERS",
    "ModelOverride",
    "ProviderConfig",
    "ProvidersConfig",
    "is_provider_name",
]

# The 24 names of the template's canonical list, plus the two more that make up the
# reference's count of 26: Moltis's `KNOWN_PROVIDER_NAMES` (schema/providers.rs) also
# accepts "local" (a config-key alias of "local-llm") and "opencode-zen" (the opencode.ai
# multi-protocol proxy), which the template's comment leaves out.
KNOWN_PROVIDERS: frozenset[str] = frozenset(
    {
        "anthropic",
        "openai",
        "gemini",
        "groq",
        "xai",
        "deepinfra",
        "deepseek",
        "fireworks",
        "mistral",
        "openrouter",
        "cerebras",
        "minimax",
        "moonshot",
        "zai",
        "zai-code",
        "venice",
        "nearai",
        "alibaba-coding",
        "ollama",
        "lmstudio",
        "local-llm",
        "openai-codex",
        "github-copilot",
        "kimi-code",
        "local",
        "opencode-zen",
    }
)

_CUSTOM_PROVIDER = re.compile(r"custom-[a-z0-9-]+")


def is_provider_name(name: str) -> bool:
    """True for a known provider or a custom one named `custom-<slug>` ([a-z0-9-]+)."""
    return name in KNOWN_PROVIDERS or _CUSTOM_PROVIDER.fullmatch(name) is not None


class ModelOverride(Section):
    """`[models.<id>]` or `[providers.<name>.model_overrides.<id>]`."""

    # Rust Option<u32>; Moltis's check: 0 is an error, above 10M unusually large
    context_window: Annotated[UInt32, expected(1, 10_000_000)] | None = None


class ProviderConfig(Section):
    """`[providers.<name>]`: one LLM provider."""

    __aliases__: ClassVar[dict[str, str]] = {"url": "base_url"}

    enabled: bool = True
    api_key: Secret | None = None
    base_url: str | None = None
    models: list[str] = msgspec.field(default_factory=list)
    fetch_models: bool = True
    stream_transport: Literal["sse", "websocket", "auto"] = "sse"
    wire_api: Literal["chat-completions", "responses"] = "chat-completions"
    alias: str | None = None
    tool_mode: Literal["auto", "native", "text", "off"] = "auto"
    cache_retention: Literal["none", "short", "long"] = "short"
    # Absent means auto-detect per provider (OpenRouter and Gemini non-strict).
    strict_tools: bool | None = None
    policy: ToolPolicyConfig | None = None
    model_overrides: dict[str, ModelOverride] = msgspec.field(default_factory=dict)
    # Absent: local models stay loaded; 0 never unloads.
    idle_timeout_secs: UInt | None = None
    # Absent: Moltis's built-in 30 s.
    probe_timeout_secs: UInt | None = None


class ProvidersConfig(Section):
    """`[providers]`: the offered list plus one flattened table per provider name.

    Item access (`providers["openai"]`, `"openai" in providers`, `del`, `get`) goes to
    `entries`, which holds every `[providers.<name>]` table.
    """

    __flatten__: ClassVar[str] = "entries"

    # Empty means every provider is enabled and offered.
    offered: list[str] = msgspec.field(default_factory=list)
    show_legacy_models: bool = False
    entries: dict[str, ProviderConfig] = msgspec.field(default_factory=dict)

    def __getitem__(self, name: str) -> ProviderConfig:
        return self.entries[name]

    def __setitem__(self, name: str, value: ProviderConfig) -> None:
        self.entries[name] = value

    def __delitem__(self, name: str) -> None:
        del self.entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        # Without this, Python would fall back to iterating with __getitem__(0, 1, ...).
        return iter(self.entries)

    def get(self, name: str, default: ProviderConfig | None = None) -> ProviderConfig | None:
        """The provider's table, or `default` when it has none."""
        return self.entries.get(name, default)
