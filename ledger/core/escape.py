"""The one escaping function for every value shown to a person.

Values are stored exactly as given (audit fidelity), so a reason, an actor or a config
value may hold characters that drive a terminal: ESC/CSI/OSC sequences (erase a line,
move the cursor, set the window title), a newline that forges a whole extra line in a
one-line-per-event stream, or a bidi override (U+202E) that makes text read backwards.
Every human output shows them as visible escapes instead: C0 controls and DEL as `\\x1b`,
`\\n`, `\\t`, `\\r` (newlines kept only where a multi-line text is expected), C1 controls
as `\\x9b`, and bidi/line-separator characters as `\\u202e`; so is every other character
Python does not call printable (zero-width and other format characters, unassigned code
points), which the web view shows the same way. JSON output stays valid
JSON: `json_safe` writes the same characters as JSON `\\uXXXX` escapes (the same value).
"""

from __future__ import annotations

import functools
import re
from typing import Final

__all__ = ["UNSAFE_CHARS", "escape", "is_hidden", "json_safe", "visible_char",
           "visible_escapes"]

# bidi embeddings/overrides/isolates and marks, the Arabic letter mark, and the Unicode
# line/paragraph separators (which some terminals and viewers break lines at)
_BIDI: Final = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SEPARATORS: Final = "\u2028\u2029"
UNSAFE_CHARS: Final = (
    "".join(map(chr, range(0x20))) + "\x7f" + "".join(map(chr, range(0x80, 0xA0)))
    + _BIDI + _SEPARATORS
)
_NAMED: Final = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


# The patterns are compiled on first use, not at import: every command imports this
# module, few match with them, and compiling the first costs half a millisecond of
# the CLI's start (issue 16).
@functools.cache
def _non_json_safe() -> re.Pattern[str]:
    return re.compile(f"[{re.escape(_BIDI + _SEPARATORS)}\x7f\x80-\x9f]")


def visible_char(ch: str) -> str:
    """One hidden character as its visible escape: `\\n`, `\\x1b`, `\\u202e`."""
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def is_hidden(ch: str) -> bool:
    """Whether a character must be shown escaped: every character Python does not call
    printable (C0, DEL, C1, format characters such as bidi overrides and zero-width
    joiners, line/paragraph separators, surrogates, private use, unassigned, and
    spaces other than U+0020), which covers every character in `UNSAFE_CHARS`."""
    return not ch.isprintable()


def escape(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every hidden character (see `is_hidden`) shown as a visible escape (a
    newline kept only with `keep_newlines`). Text without one is returned as is."""
    if text.isprintable():  # C speed for the common case
        return text
    return "".join(
        c if c.isprintable() or (keep_newlines and c == "\n") else visible_char(c)
        for c in text)


def json_safe(text: str) -> str:
    """JSON text (as `json.dumps(ensure_ascii=False)` writes it, which already escapes
    C0 controls) with DEL, C1 and bidi characters also written as `\\uXXXX`: the same
    JSON value, but nothing in it can drive a terminal that shows it."""
    pattern = _non_json_safe()
    if pattern.search(text) is None:
        return text
    return pattern.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


# a JSON/TOML escape (`\u001b`, `\b`, `\f`) not itself escaped (an even run of backslashes
# before it: `\\u001b` is a typed backslash followed by text)
@functools.cache
def _doc_escape() -> re.Pattern[str]:
    return re.compile(r"(?<!\\)((?:\\\\)*)\\(u([0-9a-fA-F]{4})|b|f)")


def visible_escapes(text: str) -> str:
    """Text a TOML or JSON writer produced for people (`show`), with its escapes of hidden
    characters (`\u001b`, `\b`, `\f`) rewritten to this module's visible form (`\x1b`,
    `\x08`, `\x0c`), so a control character reads the same there as in every other
    human output. Escapes of other characters are left as written."""
    def visible(match: re.Match[str]) -> str:
        code = {"b": 8, "f": 12}.get(match.group(2))
        ch = chr(code if code is not None else int(match.group(3), 16))
        if not is_hidden(ch):
            return match.group(0)
        return match.group(1) + visible_char(ch)

    return _doc_escape().sub(visible, escape(text, keep_newlines=True))
