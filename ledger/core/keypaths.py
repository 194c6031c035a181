"""Key paths: `tools.exec.sandbox.mode`, `models."gpt-5.5".context_window`.

A path is a tuple of keys. Its text form is TOML's dotted-key syntax, so any key a
`moltis.toml` can hold (dots, slashes, spaces) can be named: bare keys are
`[A-Za-z0-9_-]+`, anything else is quoted ("..." with JSON escapes, or '...').
"""

from __future__ import annotations

import json
import re

from ledger.errors import InvalidPathError

__all__ = ["KeyPath", "format_path", "parse_path"]

KeyPath = tuple[str, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_MAX_DEPTH = 64


def parse_path(text: str) -> KeyPath:
    """Parse a dotted key path; raise InvalidPathError naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidPathError("empty key path: name a key such as server.port")
    keys: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            raise InvalidPathError(f"key path {text!r} ends with a dot")
        ch = text[i]
        if ch == '"':
            end = _closing_quote(text, i)
            try:
                key = json.loads(text[i : end + 1])
            except json.JSONDecodeError as err:
                raise InvalidPathError(f"key path {text!r}: bad quoted key: {err.msg}") from None
            i = end + 1
        elif ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise InvalidPathError(f"key path {text!r}: unterminated quoted key")
            key = text[i + 1 : end]
            i = end + 1
        else:
            m = _BARE.match(text, i)
            if not m:
                what = "an empty key (two dots in a row?)" if ch == "." else f"character {ch!r}"
                raise InvalidPathError(f"key path {text!r}: {what} at position {i}")
            key = m.group(0)
            i = m.end()
        keys.append(key)
        if len(keys) > _MAX_DEPTH:
            raise InvalidPathError(f"key path {text[:80]!r}... is deeper than {_MAX_DEPTH} keys")
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return tuple(keys)
        if text[i] != ".":
            raise InvalidPathError(f"key path {text!r}: expected '.' at position {i}")
        i += 1


def _closing_quote(text: str, start: int) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    raise InvalidPathError(f"key path {text!r}: unterminated quoted key")


def format_key(key: str) -> str:
    return key if _BARE.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def format_path(path: KeyPath) -> str:
    """The text form of a path; `parse_path(format_path(p)) == p` for every path."""
    return ".".join(format_key(k) for k in path) if path else "<root>"


def is_prefix(prefix: KeyPath, path: KeyPath) -> bool:
    return path[: len(prefix)] == prefix
