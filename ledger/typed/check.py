"""`check`: what Moltis would ignore, warn about or refuse in a raw document, by path.

Severity follows Moltis: a value Moltis fails to load, or a mask placeholder where a
secret belongs (Moltis would send `<secret fp:…>` as the key), is an `error`; a key or
provider name Moltis does not know (it ignores them on load, and its own `config check`
reports them) or a value Moltis loads but warns about is a `warning`. Every problem is
reported, not only the first, and unknown names come with the nearest known ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ledger.core.document import leaves
from ledger.core.keypaths import KeyPath, format_path
from ledger.core.secret_refs import parse_mask
from ledger.schema import MoltisConfig
from ledger.schema.introspect import (
    SectionInfo,
    TypeNode,
    choices_of,
    expected_of,
    field_at,
    section_info,
)
from ledger.schema.providers import ProvidersConfig, is_provider_name
from ledger.typed.convert import invalid_values
from ledger.typed.suggest import did_you_mean, suggest_paths, suggest_providers

__all__ = ["Problem", "check", "masked_values"]

Kind = Literal["unknown-key", "unknown-provider", "invalid-value", "masked-secret"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """Something `check` found, named by path."""

    path: str
    kind: Kind
    message: str
    severity: Severity = "error"
    suggestions: list[str] = field(default_factory=list)


def check(raw: Mapping[str, Any]) -> list[Problem]:
    """Unknown keys and provider names (warnings, with suggestions), every invalid value
    and every mask placeholder (errors), in document order."""
    problems: list[Problem] = []
    _check_section(raw, section_info(MoltisConfig), (), problems)
    for path, why in invalid_values(raw):
        p = format_path(path)
        problems.append(Problem(p, "invalid-value", f"{p}: {why}"))
    problems += _semantic_warnings(raw)
    problems += [Problem(format_path(path), "masked-secret",
                         f"{format_path(path)}: a masked placeholder ({text[:40]}), not "
                         "a secret: Moltis would use it as the value; export with "
                         "--reveal or set the real secret")
                 for path, text in masked_values(raw)]
    return problems


def masked_values(doc: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
    """Every string of a document that is a mask placeholder (`<secret fp:…>`)."""
    return [(path, value) for path, value in leaves(dict(doc))
            if isinstance(value, str) and parse_mask(value) is not None]


def _semantic_warnings(raw: Mapping[str, Any]) -> list[Problem]:
    """Values Moltis loads but does not expect: text fields (Rust `String`s) outside
    their documented values (`ledger.schema.base.choices`), as Moltis's own semantic
    check warns about `tools.exec.sandbox.network`, `tailscale.mode`, ..."""
    out: list[Problem] = []
    for path, value in leaves(dict(raw)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out += _out_of_range(path, value)
            continue
        if not isinstance(value, str):
            continue
        node = field_at(path)
        allowed = choices_of(node) if node is not None else None
        if allowed is None or value in allowed:
            continue
        p = format_path(path)
        shown = ", ".join(v for v in allowed if v) + (" or empty" if "" in allowed else "")
        out.append(Problem(p, "invalid-value",
                           f"{p}: unexpected value (withheld); expected one of: {shown} "
                           "(Moltis loads it, but may ignore or misread it)", "warning"))
    return out


def _out_of_range(path: KeyPath, value: float) -> list[Problem]:
    """A number its Rust type loads outside the range it is meant to be in (`expected`),
    as Moltis's own semantic check reports `context_window`, `sample_rate`, ..."""
    node = field_at(path)
    bounds = expected_of(node) if node is not None else None
    if bounds is None:
        return []
    low, high = bounds
    if value < low:
        where = (f"below {low}, the least it is meant to be" if high is None
                 else f"outside {low}..{high}, the range it is meant to be in")
    elif high is not None and value > high:
        where = f"outside {low}..{high}, the range it is meant to be in"
    else:
        return []
    p = format_path(path)
    return [Problem(p, "invalid-value",
                    f"{p}: {value!r} is {where} (Moltis loads it, but its "
                    "own check warns about it or calls it an error)", "warning")]


def _check_section(raw: Mapping[str, Any], info: SectionInfo, path: KeyPath,
                   problems: list[Problem]) -> None:
    for key, value in raw.items():
        key_path = (*path, key)
        fn = info.fields.get(info.aliases.get(key, key))
        if key in info.aliases and fn is not None:
            # serde reads an alias as the field itself: a table with both is refused
            twins = [k for k in raw if k != key and info.aliases.get(k, k) == fn.key]
            if twins:
                p = format_path(key_path)
                problems.append(Problem(
                    p, "invalid-value",
                    f"{p}: the same field as {format_path((*path, twins[0]))} (an old "
                    "name of it): Moltis refuses a table holding both (\"duplicate "
                    f"field `{fn.key}`\"); unset {p}"))
        if fn is None and info.flatten is not None:
            if info.cls is ProvidersConfig and not is_provider_name(key):
                near = suggest_providers(key)
                problems.append(Problem(
                    format_path(key_path), "unknown-provider",
                    f"{format_path(key_path)}: unknown provider name {key!r} (known names, "
                    f"or custom-<slug>){did_you_mean(near)}", "warning",
                    [format_path((*path, n)) for n in near],
                ))
            item = info.flatten.node.item
            if item is not None and isinstance(value, dict):
                _check_node(value, item, key_path, problems)
            continue
        if fn is None:
            near = suggest_paths(key_path)
            problems.append(Problem(
                format_path(key_path), "unknown-key",
                f"{format_path(key_path)}: unknown key (kept, but Moltis ignores it)"
                f"{did_you_mean(near)}", "warning", near,
            ))
            continue
        if isinstance(value, dict):
            _check_node(value, fn.node, key_path, problems)


def _check_node(raw: Mapping[str, Any], node: TypeNode, path: KeyPath,
                problems: list[Problem]) -> None:
    if node.kind == "section" and node.cls is not None:
        _check_section(raw, section_info(node.cls), path, problems)
    elif node.kind == "dict" and node.item is not None and node.item.kind in ("section", "dict"):
        for key, value in raw.items():
            if isinstance(value, dict):
                _check_node(value, node.item, (*path, key), problems)
