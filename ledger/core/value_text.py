"""How a document value is written on one line for people (the CLI and the web view
share it): strings as they are, everything else as JSON so types stay visible.

Strings inside (quoted) are escaped by the one rule of `ledger.core.escape`, not by
JSON's: JSON writes a control character as `\\u001b` (and `\\b`, `\\f`), where every other
human output shows `\\x1b`; one form everywhere lets an operator compare what `diff`,
`log`, `get` and `show` print. Quotes and backslashes are escaped as in JSON, so a typed
backslash (`\\\\x1b`) still differs from the character."""

from __future__ import annotations

import json
from typing import Any

from ledger.core.escape import escape

__all__ = ["literal", "value_text"]


def _quoted(text: str) -> str:
    return '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _json_like(value: Any) -> str:
    """JSON's layout (`json.dumps` defaults: ", " and ": "), strings `_quoted`."""
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_quoted(str(k))}: {_json_like(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_json_like(v) for v in value) + "]"
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return _quoted(str(value))  # as json.dumps(default=str) would


def value_text(value: Any) -> str:
    """A document value on one line: strings as they are (masks included), the rest as
    JSON so types stay visible."""
    if isinstance(value, str):
        return value
    return _json_like(value)


def literal(value: Any) -> str:
    """A value as it would be typed: strings quoted (except mask placeholders)."""
    if isinstance(value, str) and not value.startswith("<secret"):
        return _quoted(value)
    return value_text(value)
