"""serde_yaml 0.9.34's readings of a YAML scalar's text (`de.rs`), which are not YAML
1.2's: what Moltis makes of a value in `moltis.yaml` (`ledger.files.yaml_read`).

A plain (unquoted) untagged scalar (`visit_untagged_scalar`): `~`/`null`/`Null`/`NULL`/
empty is null; `true`/`True`/`TRUE` and the false forms are bools; an integer is
decimal, or `0x`, `0o`, `0b` with an optional sign, but never with a leading zero
(`0042` is text, `digits_but_not_number`) or an underscore (`1_000` is text); a float
is what Rust parses as a finite f64 (`parse_f64`), or `.inf`/`.nan` (`1e400` is text);
everything else is text, timestamps included. Each `parse_*` returns None for text that
is not of its kind (`parse_null`: True for a null).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

__all__ = ["parse_bool", "parse_f64", "parse_int", "parse_null", "serde_plain"]

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True,
          "false": False, "False": False, "FALSE": False}
_RADIX = (("0x", 16, "0123456789abcdefABCDEF"), ("0o", 8, "01234567"), ("0b", 2, "01"))
_INT_RANGE = (-(1 << 127), (1 << 128) - 1)  # u64, i64, u128, i128: serde_yaml's tries


@functools.cache
def _decimal() -> re.Pattern[str]:
    return re.compile(r"-?[0-9]+")


@functools.cache
def _rust_float() -> re.Pattern[str]:
    # Rust's f64 grammar without inf/nan (never finite): 1, 1., .5, 1e5, -1.5E-3
    return re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _digits_but_not_number(text: str) -> bool:
    body = text[1:] if text[:1] in ("+", "-") else text
    return len(body) > 1 and body[0] == "0" and body.isascii() and body.isdigit()


def _unplussed(text: str) -> str | None:
    """`text` without one leading `+` (None when a second sign follows it)."""
    if not text.startswith("+"):
        return text
    return None if text[1:2] in ("+", "-") else text[1:]


def parse_null(text: str) -> bool:
    return text in _NULLS


def parse_bool(text: str) -> bool | None:
    return _BOOLS.get(text)


def parse_int(text: str) -> int | None:
    body = _unplussed(text)
    if body is None:
        return None
    sign, digits = (-1, body[1:]) if body.startswith("-") else (1, body)
    if len(digits) > 132:  # longer than any u128 in any radix (and than int()'s limit)
        return None
    for prefix, radix, allowed in _RADIX:
        if digits.startswith(prefix):
            rest = digits[2:]
            if rest and all(c in allowed for c in rest):
                return _in_range(sign * int(rest, radix))
            return None
    if _digits_but_not_number(text) or not _decimal().fullmatch(body):
        return None
    return _in_range(int(body))


def _in_range(value: int) -> int | None:
    return value if _INT_RANGE[0] <= value <= _INT_RANGE[1] else None


def parse_f64(text: str) -> float | None:
    body = _unplussed(text)
    if body is None:
        return None
    if body in (".inf", ".Inf", ".INF"):
        return math.inf
    if text in ("-.inf", "-.Inf", "-.INF"):
        return -math.inf
    if text in (".nan", ".NaN", ".NAN"):
        return math.nan
    if not _rust_float().fullmatch(body):
        return None
    value = float(body)
    return value if math.isfinite(value) else None


def serde_plain(text: str) -> Any:
    """A plain untagged scalar's value (`visit_untagged_scalar`)."""
    if parse_null(text):
        return None
    flag = parse_bool(text)
    if flag is not None:
        return flag
    number: int | float | None = parse_int(text)
    if number is None and not _digits_but_not_number(text):
        number = parse_f64(text)
    return text if number is None else number
