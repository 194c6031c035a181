"""`check`: what Moltis would ignore, warn about or refuse in a raw document, by path.

Severity follows Moltis: a value Moltis fails to load, or a mask placeholder where a
secret belongs (Moltis would send `<secret fp:…>` as the key), is an `error`; a key or
provider name Moltis does not know (it ignores them on load, and its own `config check`
reports them) or a value Moltis loads but warns about is a `warning`. Every problem is
reported, not only the first, and unknown names come with the nearest known ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ledger.core.document import leaves
from ledger.core.keypaths import KeyPath, format_path
from ledger.core.secret_refs import parse_mask
from ledger.files.read_notes import MAX_NOTES, ReadNotes
from ledger.schema import MoltisConfig
from ledger.schema.introspect import (
    SectionInfo,
    TypeNode,
    choices_of,
    expected_of,
    field_at,
    is_any,
    is_known_path,
    is_optional,
    known_prefix,
    node_at,
    section_info,
    strip_annotated,
)
from ledger.schema.providers import ProvidersConfig, is_provider_name
from ledger.typed.convert import invalid_values
from ledger.typed.suggest import did_you_mean, suggest_paths, suggest_providers

__all__ = ["Problem", "check", "masked_values"]

Kind = Literal["unknown-key", "unknown-provider", "invalid-value", "masked-secret", "null-value",
               "unquoted-text", "non-finite", "toml-date", "given-twice", "left-out"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """Something `check` found, named by path."""

    path: str
    kind: Kind
    message: str
    severity: Severity = "error"
    suggestions: list[str] = field(default_factory=list)


def check(raw: Mapping[str, Any], notes: ReadNotes | None = None) -> list[Problem]:
    """Unknown keys and provider names (warnings, with suggestions), every invalid value
    and every mask placeholder (errors), in document order; and, for a file read into
    `raw`, what its reading changed (`notes`: see `ledger.stores.config_file`)."""
    problems = [] if notes is None else _reading_problems(notes)
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


def _reading_problems(notes: ReadNotes) -> list[Problem]:
    """Where reading a config file made its document differ from what it says, as
    Moltis reads it: nulls, inf/nan, YAML numbers read as text, TOML dates."""
    problems = _null_problems(notes.nulls)
    buffered = ("in a table Moltis reads whole first ({}), which keeps it a number: Moltis "
                "refuses it and would not load the file; the ledger keeps its text: quote it")
    reading: list[tuple[list[KeyPath], Kind, str, Severity]] = [
        (notes.non_finite, "non-finite", "inf or nan in a free-form value or an unknown "
         "key: Moltis reads it as null there (or ignores the key), the ledger leaves it out "
         "(it stores no inf, nan or null); give a finite number if one is meant", "warning"),
        (notes.texts, "unquoted-text", "an unquoted number, bool or null in YAML where the "
         "field takes text: Moltis reads it as its text, and so does the ledger; quote it to "
         "say so", "warning"),
        (notes.refused_texts, "unquoted-text", "an unquoted number or bool in YAML where the "
         "field takes text, " + buffered.format("a provider entry, a tool choice"), "error"),
        (notes.refused_keys, "unquoted-text", "an unquoted number as a key, "
         + buffered.format("a flattened table"), "error"),
        (notes.given_twice, "given-twice", "given twice in one table: Moltis keeps the last, "
         "and so does the ledger; remove the other", "warning")]
    for paths, kind, what, severity in reading:
        problems += [Problem(format_path(path), kind, f"{format_path(path)}: {what}", severity)
                     for path in paths]
    if notes.left_out:
        problems.append(Problem("", "left-out", f"{notes.left_out} more of the problems "
                                f"above (only the first {MAX_NOTES} of each kind are named)",
                                "warning"))
    for path in notes.dates:
        node, p = node_at(path), format_path(path)
        if node is not None:  # toml's Datetime is a table to serde: no typed field takes one
            problems.append(Problem(p, "toml-date", f"{p}: a TOML date or time, which Moltis "
                                    f"refuses for this field (it takes {_takes(node)}), so it "
                                    "would not load the file; the ledger keeps its text: "
                                    "quote it to make it text for both"))
        elif is_known_path(path):  # below a free-form value (else unknown)
            problems.append(Problem(p, "toml-date", f"{p}: a TOML date or time in a free-form "
                                    "value: Moltis passes it on as a table "
                                    '({"$__toml_private_datetime": ...}), the ledger as its '
                                    "text; quote it to make it text for both", "warning"))
    return problems


def _null_problems(nulls: Iterable[KeyPath]) -> list[Problem]:
    """A null reads as the key not set, which is what Moltis does for an `Option` field;
    for any other typed field serde refuses the whole file (and Moltis starts on its
    defaults), so that is an error. Below a free-form value Moltis keeps the null, which
    the ledger cannot (its files are TOML): a warning. Unknown keys Moltis ignores."""
    out: list[Problem] = []
    for path in sorted(nulls):
        depth, node = known_prefix(path)
        p = format_path(path)
        if depth < len(path):
            continue
        if is_optional(node):
            default = _default_at(path)
            if default is not None:
                out.append(Problem(p, "null-value", f"{p}: null, which Moltis reads as none "
                                   f"(not its default, {json.dumps(default)}); the ledger has "
                                   "no null "
                                   "to store and serves the default: set the value you mean",
                                   "warning"))
        elif is_any(node):
            out.append(Problem(p, "null-value", f"{p}: null in a free-form value: Moltis "
                               "passes it on as null, the ledger leaves the key out (TOML "
                               "has no null); remove it, or give the value Moltis should "
                               "use", "warning"))
        else:
            out.append(Problem(p, "null-value", f"{p}: null, which Moltis refuses for this "
                               f"field (it takes {_takes(node)}), so it would not load the "
                               "file; remove the key to use its default"))
    return out


def _default_at(path: KeyPath) -> Any:
    """The default of the field `path` names (None for a map entry or no default)."""
    parent = field_at(path[:-1])
    if parent is None or parent.kind != "section" or parent.cls is None:
        return None
    info = section_info(parent.cls)
    found = info.fields.get(info.aliases.get(path[-1]) or path[-1])
    if found is None:
        return None
    return found.factory() if found.factory is not None else found.default


def _takes(node: TypeNode) -> str:
    """What a typed field takes, in words, for a message."""
    if node.kind in ("section", "dict"):
        return "a table"
    if node.kind == "list":
        return "an array"
    kind = strip_annotated(node.annotation)
    words = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    return words.get(kind, "text" if node.kind == "secret" else "a value")


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
