r"""Key paths: `tools.exec.sandbox.mode`, `models."gpt-5.5".context_window`.

A path is a tuple of keys. Its text form is TOML's dotted-key syntax, so any key a
`moltis.toml` can hold (dots, slashes, spaces) can be named: bare keys are
`[A-Za-z0-9_-]+`, anything else is quoted ("..." with JSON's escapes and `\xHH`,
`\UHHHHHHHH`, or '...'). A path is printed with every hidden character of a key
escaped the way every human output shows it (`"srv\x1b[2J"`, `\u202e`: see
`ledger.core.escape`), so what `log`, `blame` or `show` prints can be given back to
`get` and `set`. What the ledger stores (import prints, shred paths) keeps the JSON
form (`stored_path`), which older releases read.

A document path names which of the ledger's two documents a path is in: plain paths
are moltis.toml, `keys:` paths are provider_keys.json (`keys:openai.apiKey`). This is
the one grammar every command that takes a path accepts (`parse_doc_path`), and the
one they print (`format_doc_path`).
"""

from __future__ import annotations

import json
import re
import string
from typing import Literal

from ledger.core.escape import escape
from ledger.errors import InvalidPathError

__all__ = ["KEYS_PREFIX", "KeyPath", "format_doc_path", "format_path", "parse_doc_path",
           "parse_path", "stored_path"]

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
            key = _unquote(text[i + 1 : end], text)
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


_ESCAPED = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t"}
_HEX_WIDTH = {"x": 2, "u": 4, "U": 8}
_HEX_DIGITS = frozenset(string.hexdigits)


def _unquote(body: str, text: str) -> str:
    r"""A double-quoted key's text: JSON's escapes, and `\xHH`/`\UHHHHHHHH` as printed."""
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        kind = body[i + 1 : i + 2]
        if kind in _ESCAPED:
            out.append(_ESCAPED[kind])
            i += 2
            continue
        width = _HEX_WIDTH.get(kind, 0)
        digits = body[i + 2 : i + 2 + width]
        if not width or len(digits) != width or not set(digits) <= _HEX_DIGITS:
            raise InvalidPathError(
                f"key path {text!r}: bad quoted key: {body[i:i + 2]!r} is not an escape "
                "(\\x1b, \\u202e, \\n, \\\" ...; write a backslash as \\\\)")
        code = int(digits, 16)
        i += 2 + width
        low = body[i + 2 : i + 6] if body[i : i + 2] == "\\u" else ""
        if (kind == "u" and 0xD800 <= code < 0xDC00 and len(low) == 4
                and set(low) <= _HEX_DIGITS and 0xDC00 <= int(low, 16) < 0xE000):
            code = 0x10000 + ((code - 0xD800) << 10) + (int(low, 16) - 0xDC00)  # as JSON
            i += 6
        if code > 0x10FFFF:
            raise InvalidPathError(f"key path {text!r}: bad quoted key: \\U{digits} is "
                                   "beyond Unicode")
        out.append(chr(code))
    return "".join(out)


def format_key(key: str) -> str:
    r"""A key as a path prints it: bare when it can be, else double-quoted with its
    hidden characters as every human output shows them (`\x1b`, `\u202e`)."""
    if _BARE.fullmatch(key):
        return key
    return '"' + escape(key.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def format_path(path: KeyPath) -> str:
    """The text form of a path; `parse_path(format_path(p)) == p` for every path, and it
    holds no hidden character (nothing in it can drive a terminal)."""
    return ".".join(format_key(k) for k in path) if path else "<root>"


def stored_path(path: KeyPath) -> str:
    """The form the ledger stores a path in (import prints, shred events): quoted keys
    in JSON's form, as every release wrote and reads them; `parse_path` reads it."""
    return ".".join(k if _BARE.fullmatch(k) else json.dumps(k, ensure_ascii=False)
                    for k in path) if path else "<root>"


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


def format_doc_path(doc: str, path: KeyPath, *, stored: bool = False) -> str:
    """The text form `parse_doc_path` reads back (`stored`: in `stored_path`'s form)."""
    form = stored_path if stored else format_path
    if doc == "keys":
        return KEYS_PREFIX + (form(path) if path else "")
    return form(path)
