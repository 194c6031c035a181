"""The layers above the raw document: `${VAR}` substitution, MOLTIS_* environment
overrides (which variables and how they are read: `ledger.typed.env_overrides`) and CLI
flags, and per-path provenance.

    schema defaults -> raw (ledger or file) -> environment -> CLI flags

Substituted and overridden values live only in the effective view; they are never
written back into the raw document, the ledger or the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec

from ledger._log import get_logger
from ledger.core.document import MISSING, Doc, apply_changes, get_value
from ledger.core.events import Change
from ledger.core.keypaths import KeyPath, format_path
from ledger.core.secret_refs import SecretOpener, SecretRef
from ledger.errors import ConfigValidationError, SecretError
from ledger.schema import MoltisConfig
from ledger.schema.introspect import ROOT, TypeNode, section_info
from ledger.typed.convert import to_typed
from ledger.typed.env_overrides import (
    ALIAS_BYTES,
    ALIAS_NAMES,
    EnvOverride,
    IgnoredOverride,
    alias_overrides,
    parse_env_overrides,
)
from ledger.typed.flags import NO_FLAGS, Flags
from ledger.typed.plain_refs import plain_ref_paths

__all__ = [
    "NO_FLAGS",
    "EnvOverride",
    "Flags",
    "IgnoredOverride",
    "Provenance",
    "effective_config",
    "masked_paths",
    "parse_env_overrides",
]

_log = get_logger("ledger.typed.layers")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Layer = Literal["default", "ledger", "file", "env", "flag"]


@dataclass(frozen=True)
class Provenance:
    """Where the effective value of one leaf path came from."""

    layer: Layer
    origin: str  # human-readable: "seq 12 by alice@host", "/etc/moltis.toml", "MOLTIS_X", ...
    seq: int | None = None
    actor: str | None = None
    time: str | None = None
    reason: str | None = None
    variable: str | None = None
    flag: str | None = None
    file: str | None = None
    substituted: tuple[str, ...] = ()  # ${VAR} names substituted into this value
    ignored: tuple[str, ...] = ()  # overrides of this path that were ignored, and why
    # ${VAR} names substituted from a sealed [env] entry: the value is a secret, masked
    # in every display (the gateway still receives it)
    sealed_env: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, ())}


DEFAULT: Final = Provenance("default", "default")


# ---------------------------------------------------------------------------------
# ${VAR} substitution


def environment_key(env: Mapping[str, str] | None, variables: Sequence[str],
                    encoded: Sequence[bytes] | None = None) -> tuple[Any, ...]:
    """What an effective config depends on in the environment: every MOLTIS_* variable
    and the ${NAME}s the document uses, and the third-party aliases (ENV_ALIASES); equal
    keys mean the cached view still holds.
    `encoded`: the same names in the same order, fs-encoded (a caller asking on every
    read keeps them: encoding the hundred names of i16i's config on each read cost more
    than looking them up).

    For the process environment it reads os.environ's underlying bytes mapping without
    decoding every entry, which makes a cached `load_effective()` several times cheaper."""
    data = getattr(os.environ, "_data", None) if env is None or env is os.environ else None
    if isinstance(data, dict):
        names = encoded if encoded is not None else [os.fsencode(n) for n in variables]
        return (tuple(item for item in data.items() if item[0].startswith(b"MOLTIS_")),
                tuple(map(data.get, names)), tuple(map(data.get, ALIAS_BYTES)))
    env = os.environ if env is None else env
    return (tuple(sorted((k, v) for k, v in env.items() if k.startswith("MOLTIS_"))),
            tuple(env.get(n) for n in variables), tuple(map(env.get, ALIAS_NAMES)))


def referenced_variables(doc: Mapping[str, Any]) -> frozenset[str]:
    """Every NAME used as ${NAME} in the document's strings."""
    names: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            if "${" in v:
                names.update(_VAR.findall(v))
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(doc)
    return frozenset(names)


def _env_table_lookup(doc: Mapping[str, Any], opener: SecretOpener | None,
                      sealed: dict[str, str]) -> Callable[[str], str | None]:
    table = doc.get("env")

    def lookup(name: str) -> str | None:
        if not isinstance(table, dict) or name not in table:
            return None
        value = table[name]
        if isinstance(value, SecretRef):
            if opener is None:
                return None
            try:
                plain = opener.open_secret(value)
                sealed[name] = value.fp
                return plain
            except SecretError as err:
                _log.warning("cannot substitute from [env]", variable=name, error=str(err))
                return None
        return value if isinstance(value, str) else None

    return lookup


def substitute(doc: Doc, env: Mapping[str, str], opener: SecretOpener | None,
               sealed_out: dict[KeyPath, tuple[str, ...]] | None = None,
               ) -> tuple[Doc, dict[KeyPath, tuple[str, ...]]]:
    """Resolve ${NAME} in string values: process environment first, then `[env]`;
    unresolved names stay literal. Returns a new document (the input is not touched)
    and, per changed path, the names substituted. Paths whose value took a name from a
    sealed `[env]` entry go into `sealed_out` (those values are secrets)."""
    sealed_fps: dict[str, str] = {}
    table_lookup = _env_table_lookup(doc, opener, sealed_fps)
    used: dict[KeyPath, tuple[str, ...]] = {}

    def resolve(text: str, path: KeyPath) -> str:
        names: list[str] = []
        secret: list[str] = []

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            value = env.get(name)
            if value is None:
                value = table_lookup(name)
                if value is not None and name in sealed_fps:
                    secret.append(name)
            if value is None:
                return m.group(0)
            names.append(name)
            return value

        out = _VAR.sub(repl, text)
        if names:
            used[path] = tuple(names)
        if secret and sealed_out is not None:
            sealed_out[path] = (*sealed_out.get(path, ()), *secret)
        return out

    def walk(v: Any, path: KeyPath) -> Any:
        if isinstance(v, str):
            return resolve(v, path) if "${" in v else v
        if isinstance(v, dict):
            new = {k: walk(x, (*path, k)) for k, x in v.items()}
            return new if any(new[k] is not v[k] for k in v) else v
        if isinstance(v, list):
            items = [walk(x, path) for x in v]
            return items if any(a is not b for a, b in zip(items, v, strict=True)) else v
        return v

    result = walk(doc, ())
    return result, used


# ---------------------------------------------------------------------------------
# the effective config


@dataclass(frozen=True)
class Effective:
    config: MoltisConfig
    env_paths: dict[KeyPath, str]  # path -> variable
    flag_paths: dict[KeyPath, str]  # path -> flag
    substituted: dict[KeyPath, tuple[str, ...]]
    ignored: list[IgnoredOverride]
    # paths whose value came (in part) from a sealed [env] entry -> those names
    sealed: dict[KeyPath, tuple[str, ...]] = field(default_factory=dict)


def effective_config(raw: Doc, *, env: Mapping[str, str] | None = None,
                     flags: Flags = NO_FLAGS, opener: SecretOpener | None = None,
                     where: str = "config") -> Effective:
    """defaults -> raw (with ${VAR} substituted) -> valid env overrides -> flags."""
    env = os.environ if env is None else env
    sealed: dict[KeyPath, tuple[str, ...]] = {}
    doc, substituted = substitute(raw, env, opener, sealed)
    overrides, ignored = parse_env_overrides(env)
    changes: list[Change] = []
    env_paths: dict[KeyPath, str] = {}
    for ov in overrides:
        changes.extend(_set_changes(doc, ov.path, ov.value))
        env_paths[ov.path] = ov.variable
    if changes:
        doc, _ = apply_changes(doc, changes)
        changes = []
    # then the aliases, into keys still empty: one MOLTIS_* override (of the key, or of a
    # table above it) wins whatever the environment's order, as in Moltis (review r12)
    aliased, alias_ignored = alias_overrides(doc, env)
    ignored += alias_ignored
    for ov in aliased:
        changes.extend(_set_changes(doc, ov.path, ov.value))
        env_paths[ov.path] = ov.variable
    flag_paths: dict[KeyPath, str] = {}
    for path, value, flag in flags.overrides():
        changes.extend(_set_changes(doc, path, value))
        flag_paths[path] = flag
    if changes:
        doc, _ = apply_changes(doc, changes)
    try:
        typed = to_typed(doc, opener, where=where)
    except ConfigValidationError as err:
        # An override fit its field alone but not the whole (a flag with a bad value):
        # name the culprit rather than failing the stored config's reputation.
        bad = [p for p in (*flag_paths, *env_paths) if err.path == format_path(p)]
        if not bad:
            raise
        raise ConfigValidationError(
            f"{flag_paths.get(bad[0]) or env_paths.get(bad[0])}: {err}", err.path
        ) from None
    for ig in ignored:
        _log.warning("environment override ignored", variable=ig.variable, path=ig.path,
                     why=ig.why)
    for path in (*env_paths, *flag_paths):
        sealed.pop(path, None)  # an override replaced the substituted value
    return Effective(typed, env_paths, flag_paths, substituted, ignored, sealed)


def wired(eff: Effective, wiring: Mapping[str, Any] | None) -> Effective:
    """`eff` with its `[config]` naming the store it was read from (`wiring`, the raw
    `[config]` table; None: left as it is). The ledger never holds `[config]` (it is
    where the ledger lives, kept in moltis.toml), so the effective view showed the
    schema's default, `file`, for a gateway on the ledger, and a `MOLTIS_CONFIG__*`
    override open_store() does not read (review r16)."""
    if wiring is None:
        return eff
    section = to_typed({"config": dict(wiring)}, where="the store's location").config
    return dataclasses.replace(
        eff, config=msgspec.structs.replace(eff.config, config=section),
        env_paths={p: v for p, v in eff.env_paths.items() if p[:1] != ("config",)},
        flag_paths={p: v for p, v in eff.flag_paths.items() if p[:1] != ("config",)})


def masked_paths(eff: Effective, raw: Doc) -> dict[KeyPath, str | None]:
    """The effective paths to show masked, each with the fingerprint to show: values
    sealed at positions typed as plain text (`ledger.typed.plain_refs`), and values that
    came from a sealed `[env]` entry (the entry's fingerprint when the value is exactly
    that one variable, else None: a value built from a secret and other text)."""
    table = raw.get("env")
    out: dict[KeyPath, str | None] = dict(plain_ref_paths(raw))
    for path, names in eff.sealed.items():
        fp = None
        raw_value = get_value(raw, path)
        if len(names) == 1 and raw_value == f"${{{names[0]}}}" and isinstance(table, dict):
            ref = table.get(names[0])
            fp = ref.fp if isinstance(ref, SecretRef) else None
        out[path] = fp
    return out


def _set_changes(doc: Doc, path: KeyPath, value: Any) -> list[Change]:
    """Changes that put `value` at `path`, replacing a table or value there."""
    out: list[Change] = []
    for i in range(1, len(path)):
        parent = get_value(doc, path[:i])
        if parent is not MISSING and not isinstance(parent, dict):
            out.append(Change(op="unset", path=path[:i]))
            break
    if isinstance(value, dict):
        out.append(Change(op="unset", path=path))
        out.extend(_dict_leaves(path, value))
    else:
        out.append(Change(op="set", path=path, value=value))
    return out


def _dict_leaves(path: KeyPath, value: dict[str, Any]) -> Iterator[Change]:
    if not value:
        yield Change(op="set", path=path, value={})
    for k, v in value.items():
        if isinstance(v, dict):
            yield from _dict_leaves((*path, k), v)
        else:
            yield Change(op="set", path=(*path, k), value=v)


# ---------------------------------------------------------------------------------
# provenance


def effective_leaves(cfg: MoltisConfig) -> Iterator[KeyPath]:
    """Every leaf path of a typed config, defaults included, in raw (TOML) form."""
    yield from _struct_leaves(cfg, ())


def _struct_leaves(obj: msgspec.Struct, path: KeyPath) -> Iterator[KeyPath]:
    info = section_info(type(obj))
    for fn in info.ordered:
        yield from _value_leaves(getattr(obj, fn.attr), fn.node, (*path, fn.key))
    if info.flatten is not None:
        for k, v in getattr(obj, info.flatten.attr).items():
            yield from _value_leaves(v, info.flatten.node.item or ROOT, (*path, k))


def _value_leaves(value: Any, node: TypeNode, path: KeyPath) -> Iterator[KeyPath]:
    if isinstance(value, msgspec.Struct):
        yield from _struct_leaves(value, path)
    elif isinstance(value, dict) and value and node.kind == "dict":
        for k, v in value.items():
            yield from _value_leaves(v, node.item or node, (*path, k))
    else:
        yield path


def provenance_map(eff: Effective, raw: Doc,
                   raw_origin: Callable[[KeyPath], Provenance | None]) -> dict[str, Provenance]:
    """Per leaf path (text form) of the effective config, the layer that won."""
    ignored_by_path: dict[str, list[str]] = {}
    for ig in eff.ignored:
        if ig.path:
            ignored_by_path.setdefault(ig.path, []).append(ig.describe())
    out: dict[str, Provenance] = {}
    for path in effective_leaves(eff.config):
        text = format_path(path)
        extra = tuple(ignored_by_path.get(text, ()))
        if path in eff.flag_paths:
            flag = eff.flag_paths[path]
            prov = Provenance("flag", flag, flag=flag)
        elif path in eff.env_paths:
            var = eff.env_paths[path]
            prov = Provenance("env", var, variable=var)
        else:
            prov = _raw_provenance(path, raw, raw_origin) or DEFAULT
            subs = eff.substituted.get(path)
            if subs:
                prov = Provenance(**{**prov.__dict__, "substituted": subs,
                                     "sealed_env": eff.sealed.get(path, ())})
        if extra:
            prov = Provenance(**{**prov.__dict__, "ignored": extra})
        out[text] = prov
    return out


def _raw_provenance(path: KeyPath, raw: Doc, raw_origin: Callable[[KeyPath], Provenance | None]
                    ) -> Provenance | None:
    # The value may be held by a leaf at this path or by an ancestor that is a value
    # (a list of tables), or under an old alias name.
    for i in range(len(path), 0, -1):
        value = get_value(raw, path[:i])
        if value is not MISSING:
            if i < len(path) and isinstance(value, dict):
                return None
            return raw_origin(path[:i])
    return None
