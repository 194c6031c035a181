"""The MOLTIS_* environment layer: which variables override which keys, and how their
text is read, as Moltis reads it (`apply_env_overrides`, crates/config/src/loader/
config_io.rs): `MOLTIS_` + path segments joined by `__`, lowercased; the value parsed as a
JSON array/object, a bool, an i64, a finite f64, else the text; Moltis's operational
variables excluded; the VERCEL_*/DAYTONA_* aliases fill sandbox keys left empty.

One deliberate difference: Moltis drops *all* overrides when one fails to deserialize;
here only the bad one is ignored, and the reason is reported (`IgnoredOverride`)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from ledger.core.document import MISSING, Doc, get_value
from ledger.core.keypaths import KeyPath, format_path
from ledger.core.secret_refs import Secret
from ledger.schema.introspect import TypeNode, field_at
from ledger.typed.convert import sanitize_message, shape

__all__ = ["ALIAS_BYTES", "ALIAS_NAMES", "ENV_ALIASES", "LEDGER_VARS", "MOLTIS_EXCLUDED",
           "EnvOverride", "IgnoredOverride", "alias_overrides", "fits", "parse_env_overrides",
           "parse_env_value"]

# Moltis reads these itself; they are not config paths.
MOLTIS_EXCLUDED: Final = frozenset({
    "CONFIG_DIR", "DATA_DIR", "SHARE_DIR", "ASSETS_DIR", "TOKEN", "PASSWORD", "TAILSCALE",
    "WEBAUTHN_RP_ID", "WEBAUTHN_ORIGIN", "EXTERNAL_URL",
})
# This library's own variables.
LEDGER_VARS: Final = frozenset({
    "CONFIG_BACKEND", "CONFIG_DSN", "CONFIG_DB", "LEDGER_KEY", "LEDGER_KEY_FILE",
    "LEDGER_ACTOR",
})


@dataclass(frozen=True)
class EnvOverride:
    variable: str
    path: KeyPath
    value: Any


@dataclass(frozen=True)
class IgnoredOverride:
    variable: str
    path: str | None
    why: str

    def describe(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"{self.variable}{where} ignored: {self.why}"


# What Rust's `str::parse` accepts (ASCII digits, an optional sign, no spaces or `_`):
# Moltis parses the variable's text untrimmed, so " 8080" and "1_000" stay strings there
_RUST_I64: Final = re.compile(r"[+-]?[0-9]+\Z")
_RUST_F64: Final = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_I64_RANGE: Final = range(-(1 << 63), 1 << 63)


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON to serde_json


def parse_env_value(text: str) -> Any:
    """Moltis's `parse_env_value` (loader/config_io.rs): a JSON array or object (the
    trimmed text, bracketed at both ends), else, on the text as it is, a bool (any
    case), an i64, a finite f64, else the text itself."""
    stripped = text.strip()
    if (stripped[:1], stripped[-1:]) in (("[", "]"), ("{", "}")):
        try:
            return json.loads(stripped, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            pass
    lowered = text.lower() if text.isascii() else ""
    if lowered in ("true", "false"):
        return lowered == "true"
    # (19 significant digits at most: more is no i64, and int() of thousands of digits
    # is refused by Python itself; Rust takes any number of leading zeros)
    if _RUST_I64.match(text) and len(text.lstrip("+-").lstrip("0")) <= 19 \
            and int(text) in _I64_RANGE:
        return int(text)
    if _RUST_F64.match(text):
        value = float(text)
        if math.isfinite(value):
            return value
    return text


def _accepts(value: Any, node: TypeNode) -> str | None:
    """None if `value` fits the schema type at this node, else why not."""
    try:
        msgspec.convert(shape(value, node), node.annotation, dec_hook=_env_hook,
                        str_keys=True)
    except msgspec.ValidationError as err:
        return sanitize_message(str(err), node.annotation)
    return None


def fits(value: Any, path: KeyPath) -> bool:
    """Whether `value` fits the schema type of the configuration key `path`."""
    node = field_at(path)
    return node is not None and _accepts(value, node) is None


def _env_hook(tp: type, obj: Any) -> Any:
    if tp is Secret and isinstance(obj, str):
        return Secret(obj)
    # a TypeError is msgspec's "this value does not fit" (a ValidationError naming the
    # path); NotImplementedError escaped and stopped every effective read (review r11)
    raise TypeError(f"expected a string, got {type(obj).__name__}")


def parse_env_overrides(env: Mapping[str, str]) -> tuple[list[EnvOverride], list[IgnoredOverride]]:
    """The MOLTIS_* overrides that apply, and those ignored with the reason."""
    good: list[EnvOverride] = []
    ignored: list[IgnoredOverride] = []
    for name in sorted(env):
        if not name.startswith("MOLTIS_"):
            continue
        rest = name[len("MOLTIS_"):]
        if rest in MOLTIS_EXCLUDED or rest in LEDGER_VARS:
            continue
        segments = rest.split("__")
        if not rest or any(not s for s in segments):
            ignored.append(IgnoredOverride(name, None, "empty path segment (use __ between keys)"))
            continue
        path = tuple(s.lower() for s in segments)
        if field_at(path) is None:
            ignored.append(IgnoredOverride(name, format_path(path), "not a configuration key"))
            continue
        _add_override(good, ignored, name, path, env[name])
    return good, ignored


def _add_override(good: list[EnvOverride], ignored: list[IgnoredOverride], name: str,
                  path: KeyPath, raw_text: str) -> None:
    node = field_at(path)
    assert node is not None  # the callers' paths are configuration keys
    value = parse_env_value(raw_text)
    why = _accepts(value, node)
    if why is not None and not isinstance(value, str) and _accepts(raw_text, node) is None:
        value, why = raw_text, None  # e.g. MOLTIS_IDENTITY__NAME=42 is the name "42"
    if why is not None:
        # never quote the value: a table may hold a key (MOLTIS_PROVIDERS__OPENAI=
        # '{"api_key": ...}'), and a scalar may be a secret pasted into the wrong
        # variable; its kind and size are enough to find the mistake
        kind = type(value).__name__.replace("str", "text").replace("dict", "table")
        ignored.append(IgnoredOverride(
            name, format_path(path),
            f"invalid value (a {kind} of {len(raw_text)} characters): {why}"))
        return
    good.append(EnvOverride(name, path, value))


# Moltis's third-party aliases (ENV_ALIASES, loader/config_io.rs): standard variables
# that fill a key only while the config leaves it unset or empty
ENV_ALIASES: Final = (
    ("VERCEL_TOKEN", ("tools", "exec", "sandbox", "vercel_token")),
    ("VERCEL_OIDC_TOKEN", ("tools", "exec", "sandbox", "vercel_token")),
    ("VERCEL_PROJECT_ID", ("tools", "exec", "sandbox", "vercel_project_id")),
    ("VERCEL_TEAM_ID", ("tools", "exec", "sandbox", "vercel_team_id")),
    ("DAYTONA_API_KEY", ("tools", "exec", "sandbox", "daytona_api_key")),
    ("DAYTONA_API_URL", ("tools", "exec", "sandbox", "daytona_api_url")),
    ("DAYTONA_TARGET", ("tools", "exec", "sandbox", "daytona_target")),
)
# the aliases' names, as text and fs-encoded (what an effective view depends on)
ALIAS_NAMES: Final = tuple(name for name, _ in ENV_ALIASES)
ALIAS_BYTES: Final = tuple(map(os.fsencode, ALIAS_NAMES))


def alias_overrides(doc: Doc, env: Mapping[str, str]
                    ) -> tuple[list[EnvOverride], list[IgnoredOverride]]:
    """The aliases that fill a key `doc` (with the MOLTIS_* overrides applied) leaves
    unset or empty: of two naming the same key (VERCEL_TOKEN, VERCEL_OIDC_TOKEN), the first
    Moltis lists (Moltis takes the first in the environment's order)."""
    good: list[EnvOverride] = []
    ignored: list[IgnoredOverride] = []
    filled: set[KeyPath] = set()
    for name, path in ENV_ALIASES:
        if name not in env or path in filled:
            continue
        current = get_value(doc, path)
        if current is not MISSING and current is not None and current != "":
            continue  # explicit config always takes precedence
        _add_override(good, ignored, name, path, env[name])
        if good and good[-1].path == path:
            filled.add(path)
    return good, ignored
