"""Key paths: `tools.exec.sandbox.mode`, `models."gpt-5.5".context_window`.

A path is a tuple of keys. Its text form is TOML's dotted-key syntax, so any key a
`moltis.toml` can hold (dots, slashes, spaces) can be named: bare keys are
`[A-Za-z0-9_-]+`, anything else is quoted ("..." with JSON escapes, or '...').

A document path names which of the ledger's two documents a path is in: plain paths
are moltis.toml, `keys:` paths are provider_keys.json (`keys:openai.apiKey`). This is
the one grammar every command that takes a path accepts (`parse_doc_path`), and the
one they print (`format_doc_path`).
"""

from __future__ import annotations

import json
import re
from typing import Literal

from ledger.errors import InvalidPathError

__all__ = ["KEYS_PREFIX", "KeyPath", "format_doc_path", "format_path", "parse_doc_path",
           "parse_path"]

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


KEYS_PREFIX = "keys:"


def parse_doc_path(text: str, *, allow_root: bool = False
                   ) -> tuple[Literal["config", "keys"], KeyPath]:
    """`keys:openai.apiKey` -> ("keys", ("openai", "apiKey")); anything else is a
    moltis.toml path. `allow_root` accepts a bare `keys:` (the whole key store), for
    commands that filter by a prefix (log, blame, diff)."""
    if isinstance(text, str) and text.startswith(KEYS_PREFIX):
        rest = text[len(KEYS_PREFIX):]
        if allow_root and not rest.strip():
            return "keys", ()
        if not rest.strip():
            raise InvalidPathError("empty key path after keys:: name an entry such as "
                                   "keys:openai or keys:openai.apiKey")
        try:
            return "keys", parse_path(rest)
        except InvalidPathError as err:
            raise InvalidPathError(f"{err} (in {text!r}; `keys:` names provider_keys.json)"
                                   ) from None
    return "config", parse_path(text)


def format_doc_path(doc: str, path: KeyPath) -> str:
    """The text form `parse_doc_path` reads back."""
    if doc == "keys":
        return KEYS_PREFIX + (format_path(path) if path else "")
    return format_path(path)
