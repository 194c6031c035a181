"""`check`: what Moltis would ignore or refuse in a raw document, named by path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ledger.core.keypaths import KeyPath, format_path
from ledger.errors import ConfigValidationError
from ledger.schema import MoltisConfig
from ledger.schema.introspect import SectionInfo, TypeNode, section_info
from ledger.schema.providers import ProvidersConfig, is_provider_name
from ledger.typed.convert import to_typed

__all__ = ["Problem", "check"]

@dataclass(frozen=True)
class Problem:
    """Something `check` found: an unknown key or an invalid value, named by path."""

    path: str
    kind: Literal["unknown-key", "unknown-provider", "invalid-value"]
    message: str


def check(raw: Mapping[str, Any]) -> list[Problem]:
    """Report unknown keys, unknown provider names and invalid values by path.

    Unknown keys are kept in the raw document and written back untouched; Moltis
    itself ignores them at load time and its `config check` reports them."""
    problems: list[Problem] = []
    _check_section(raw, section_info(MoltisConfig), (), problems)
    try:
        to_typed(raw)
    except ConfigValidationError as err:
        problems.append(Problem(err.path or "<root>", "invalid-value", str(err)))
    return problems


def _check_section(raw: Mapping[str, Any], info: SectionInfo, path: KeyPath,
                   problems: list[Problem]) -> None:
    for key, value in raw.items():
        key_path = (*path, key)
        fn = info.fields.get(info.aliases.get(key, key))
        if fn is None and info.flatten is not None:
            if info.cls is ProvidersConfig and not is_provider_name(key):
                problems.append(Problem(
                    format_path(key_path), "unknown-provider",
                    f"{format_path(key_path)}: unknown provider name {key!r} (known names, "
                    "or custom-<slug>)",
                ))
            item = info.flatten.node.item
            if item is not None and isinstance(value, dict):
                _check_node(value, item, key_path, problems)
            continue
        if fn is None:
            problems.append(Problem(
                format_path(key_path), "unknown-key",
                f"{format_path(key_path)}: unknown key (kept, but Moltis ignores it)",
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
