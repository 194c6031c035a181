"""How a document value is written on one line for people (the CLI and the web view
share it): strings as they are, everything else as JSON so types stay visible."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["literal", "value_text"]


def value_text(value: Any) -> str:
    """A document value on one line: strings as they are (masks included), the rest as
    JSON so types stay visible."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def literal(value: Any) -> str:
    """A value as it would be typed: strings quoted (except mask placeholders)."""
    if isinstance(value, str) and not value.startswith("<secret"):
        return json.dumps(value, ensure_ascii=False)
    return value_text(value)
