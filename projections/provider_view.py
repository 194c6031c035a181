"""The provider view: provider name -> its key-store entry, from the `keys` document
(what `provider_keys.json` holds), and the effective view that Moltis computes from
`[providers.<name>]` in the config, the key store and the environment.

Moltis's read precedence: values from moltis.toml win and the key store fills the
gaps; MOLTIS_PROVIDERS__<NAME>__* overrides sit on top of both (they are part of the
effective config). The plain variables Moltis also reads (`<NAME>_API_KEY`, and the
generic MOLTIS_PROVIDER/PROVIDER + MOLTIS_API_KEY/API_KEY pair) supply a key only when
neither the config nor the key store has one, as in Moltis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from ledger.core.document import Doc, copy_value
from ledger.core.secret_refs import Secret, SecretOpener, SecretRef
from ledger.errors import ParseError
from ledger.schema.provider_keys import is_key_secret_path

__all__ = [
    "EffectiveProvider",
    "ProviderKey",
    "effective_providers",
    "keys_view",
    "normalize_keys_document",
    "normalize_model_list",
]

# camelCase in the file, as Moltis writes it
FIELDS: Final = {"apiKey": "api_key", "baseUrl": "base_url", "models": "models",
                 "displayName": "display_name"}


class ProviderKey(msgspec.Struct, kw_only=True):
    """One entry of the key store. `extra` keeps fields this version does not know."""

    name: str
    api_key: Secret | None = None
    base_url: str | Secret | None = None  # a secret in phone_* entries (Twilio auth token)
    models: list[str] = msgspec.field(default_factory=list)
    display_name: str | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


def _secret(value: Any, opener: SecretOpener | None) -> Secret | None:
    if isinstance(value, SecretRef):
        return Secret.stored(value, opener)
    if isinstance(value, str):
        return Secret(value)
    return None


def keys_view(doc: Doc, opener: SecretOpener | None = None) -> dict[str, ProviderKey]:
    """The key store's entries, typed (secrets stay references until revealed)."""
    out: dict[str, ProviderKey] = {}
    for name, entry in doc.items():
        if not isinstance(entry, dict):
            continue
        base = entry.get("baseUrl")
        # a phone_* entry's baseUrl is its auth token (ledger.schema.provider_keys): a
        # secret also as plain text read from provider_keys.json, as sealed in the ledger
        # (switch-backend file compared the two and refused, review r11)
        secret_base = isinstance(base, SecretRef) or is_key_secret_path((name, "baseUrl"))
        out[name] = ProviderKey(
            name=name,
            api_key=_secret(entry.get("apiKey"), opener),
            base_url=_secret(base, opener) if secret_base else (
                base if isinstance(base, str) else None),
            models=[m for m in entry.get("models", []) if isinstance(m, str)],
            display_name=entry.get("displayName") if isinstance(
                entry.get("displayName"), str) else None,
            # the caller's own copy: nested tables/lists of the cached state never leak
            extra={k: copy_value(v) for k, v in entry.items() if k not in FIELDS},
        )
    return out


def normalize_keys_document(data: Mapping[str, Any], where: str) -> Doc:
    """Both shapes Moltis reads, as one: legacy `{name: "key"}` becomes
    `{name: {apiKey: "key"}}`, and `model` (a string or a list) becomes `models`.
    Entry names (`custom-*`, `voice-*`, `phone_*`) are kept as they are."""
    out: Doc = {}
    for name, entry in data.items():
        if isinstance(entry, str):
            out[name] = {"apiKey": entry}
            continue
        if not isinstance(entry, dict):
            raise ParseError(f"{where}: entry {name!r} must be an object or a key string, "
                             f"not {type(entry).__name__}")
        item = dict(entry)
        if "model" in item and "models" not in item:
            model = item.pop("model")
            item["models"] = [model] if isinstance(model, str) else list(model or [])
        for key in ("apiKey", "baseUrl", "displayName"):
            if key in item and not isinstance(item[key], str):
                raise ParseError(f"{where}: {name}.{key} must be a string")
        if "models" in item and not (isinstance(item["models"], list)
                                     and all(isinstance(m, str) for m in item["models"])):
            raise ParseError(f"{where}: {name}.models must be a list of strings")
        out[name] = item
    return out


_REASONING_SUFFIXES: Final = frozenset(
    f"reasoning-{level}" for level in ("minimal", "low", "medium", "high", "xhigh"))


def raw_model_id(model: str) -> str:
    """Moltis's `raw_model_id`: without a `@reasoning-*` suffix and a `provider::` prefix."""
    base, sep, suffix = model.rpartition("@")
    if sep and suffix in _REASONING_SUFFIXES:
        model = base
    return model.rpartition("::")[2]


def normalize_model_list(models: Sequence[str]) -> list[str]:
    """Moltis's `normalize_model_list` (provider-setup/key_store.rs), applied when it
    loads model lists: trimmed, namespace dropped (`openai::gpt-5.2` -> `gpt-5.2`),
    empty entries and duplicates removed, order kept."""
    out: list[str] = []
    for model in models:
        name = raw_model_id(model.strip()).strip()
        if name and name not in out:
            out.append(name)
    return out


class EffectiveProvider(msgspec.Struct, kw_only=True):
    """What the gateway uses for one provider, with the source of each field."""

    name: str
    enabled: bool = True
    api_key: Secret | None = None
    base_url: str | None = None
    models: list[str] = msgspec.field(default_factory=list)
    display_name: str | None = None
    # field -> "config" | "keys" | "keys-file" | "env:<VAR>"
    sources: dict[str, str] = msgspec.field(default_factory=dict)


def provider_env_vars(name: str) -> list[str]:
    """Per-provider key variables Moltis reads (ANTHROPIC_API_KEY, GEMINI_API_KEY, ...)."""
    base = name.upper().replace("-", "_")
    names = [f"{base}_API_KEY"]
    if name == "gemini":
        names.append("GOOGLE_API_KEY")
    return names


def effective_providers(
    config_providers: Mapping[str, Any],
    keys: Mapping[str, ProviderKey],
    env: Mapping[str, str],
    *,
    keys_source: str = "keys",
    fallback: Mapping[str, ProviderKey] | None = None,
    config_sources: Mapping[tuple[str, str], str] | None = None,
) -> dict[str, EffectiveProvider]:
    """Moltis's merge: config first, key store fills gaps, MOLTIS_PROVIDERS__* on top;
    `<NAME>_API_KEY` and the generic pair only supply a key nobody else gives.

    `config_providers` maps name -> typed `ProviderConfig` from the effective config
    (which already carries MOLTIS_PROVIDERS__* overrides, named in `config_sources` as
    (name, field) -> "env:VAR"); `fallback` are entries only present in a
    not-yet-imported provider_keys.json (reported as "keys-file")."""
    config_sources = config_sources or {}
    names: list[str] = list(dict.fromkeys([*config_providers, *keys, *(fallback or {})]))
    generic = env.get("MOLTIS_PROVIDER") or env.get("PROVIDER")
    generic_key = env.get("MOLTIS_API_KEY") or env.get("API_KEY")
    if generic and generic not in names:
        names.append(generic)
    out: dict[str, EffectiveProvider] = {}
    for name in names:
        cfg = config_providers.get(name)
        entry, src = keys.get(name), keys_source
        if entry is None and fallback is not None and name in fallback:
            entry, src = fallback[name], "keys-file"
        eff = EffectiveProvider(name=name)
        if cfg is not None:
            eff.enabled = bool(getattr(cfg, "enabled", True))
        for fld in ("api_key", "base_url", "models"):
            value = getattr(cfg, fld, None) if cfg is not None else None
            if value not in (None, []):
                setattr(eff, fld, value)
                eff.sources[fld] = config_sources.get((name, fld), "config")
            elif entry is not None and getattr(entry, fld) not in (None, []):
                kv = getattr(entry, fld)
                if fld == "base_url" and isinstance(kv, Secret):
                    continue  # phone_* reuse baseUrl for a token; it is not a URL
                setattr(eff, fld, kv)
                eff.sources[fld] = src
        # What the gateway uses is the normalized list; the stored one stays as written.
        eff.models = normalize_model_list(eff.models)
        if entry is not None and entry.display_name:
            eff.display_name = entry.display_name
            eff.sources["display_name"] = src
        if eff.api_key is None:
            for var in provider_env_vars(name):
                if env.get(var):
                    eff.api_key = Secret(env[var])
                    eff.sources["api_key"] = f"env:{var}"
                    break
        if eff.api_key is None and generic == name and generic_key:
            eff.api_key = Secret(generic_key)
            eff.sources["api_key"] = "env:MOLTIS_API_KEY" if env.get(
                "MOLTIS_API_KEY") else "env:API_KEY"
        out[name] = eff
    return out
