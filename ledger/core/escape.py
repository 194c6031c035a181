"""The one escaping function for every value shown to a person.

Values are stored exactly as given (audit fidelity), so a reason, an actor or a config
value may hold characters that drive a terminal: ESC/CSI/OSC sequences (erase a line,
move the cursor, set the window title), a newline that forges a whole extra line in a
one-line-per-event stream, or a bidi override (U+202E) that makes text read backwards.
Every human output shows them as visible escapes instead: C0 controls and DEL as `\\x1b`,
`\\n`, `\\t`, `\\r` (newlines kept only where a multi-line text is expected), C1 controls
as `\\x9b`, and bidi/line-separator characters as `\\u202e`. JSON output stays valid
JSON: `json_safe` writes the same characters as JSON `\\uXXXX` escapes (the same value).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["UNSAFE_CHARS", "escape", "json_safe"]

# bidi embeddings/overrides/isolates and marks, the Arabic letter mark, and the Unicode
# line/paragraph separators (which some terminals and viewers break lines at)
_BIDI: Final = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SEPARATORS: Final = "\u2028\u2029"
UNSAFE_CHARS: Final = (
    "".join(map(chr, range(0x20))) + "\x7f" + "".join(map(chr, range(0x80, 0xA0)))
    + _BIDI + _SEPARATORS
)
_UNSAFE = re.compile(f"[{re.escape(UNSAFE_CHARS)}]")
_UNSAFE_KEEP_NL = re.compile(f"[{re.escape(UNSAFE_CHARS.replace(chr(10), ''))}]")
_NON_JSON_SAFE = re.compile(f"[{re.escape(_BIDI + _SEPARATORS)}\x7f\x80-\x9f]")
_NAMED: Final = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _visible(m: re.Match[str]) -> str:
    ch = m.group(0)
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control, C1 and bidi character shown as a visible escape
    (a newline kept only with `keep_newlines`). Text without one is returned as is."""
    pattern = _UNSAFE_KEEP_NL if keep_newlines else _UNSAFE
    if pattern.search(text) is None:
        return text
    return pattern.sub(_visible, text)


def json_safe(text: str) -> str:
    """JSON text (as `json.dumps(ensure_ascii=False)` writes it, which already escapes
    C0 controls) with DEL, C1 and bidi characters also written as `\\uXXXX`: the same
    JSON value, but nothing in it can drive a terminal that shows it."""
    if _NON_JSON_SAFE.search(text) is None:
        return text
    return _NON_JSON_SAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)
