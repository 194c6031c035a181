"""`equal(a, b)`: the constant-time comparison of MACs and digests.

It is `hmac.compare_digest` itself (hmac re-exports this C function, and falls back to
it without OpenSSL), imported from where it lives (a private name, on purpose) so that
comparing a MAC does not load hashlib and OpenSSL: `import hmac` measured a median
5.3 ms of 15 fresh processes (3.7 ms at best, up to 30 ms under load; 2026-12-03, a
shared 2-core machine) of a `get` that otherwise loads neither
(tests/test_constant_time_import.py fails the day it does, and then the public name
costs nothing more).
Text is compared as its UTF-8 bytes: the C function raises TypeError for a str that is
not ASCII, and a stored digest or MAC read back from disk (a meta row, a manifest) is
input that may be anything; such a value simply differs.
"""

from __future__ import annotations

from typing import overload

try:
    from _operator import _compare_digest
except ImportError:  # an interpreter without CPython's _operator: the public name
    from hmac import compare_digest as _compare_digest  # type: ignore[no-redef]

__all__ = ["equal"]


@overload
def equal(a: str, b: str) -> bool: ...
@overload
def equal(a: bytes, b: bytes) -> bool: ...
def equal(a: str | bytes, b: str | bytes) -> bool:
    """True if `a` and `b` are the same text (compared as UTF-8, a lone surrogate too)
    or the same bytes. Text against bytes is a programming error: TypeError, as before."""
    if isinstance(a, str) and isinstance(b, str):
        return _compare_digest(a.encode("utf-8", "surrogatepass"),
                               b.encode("utf-8", "surrogatepass"))
    return _compare_digest(a, b)  # type: ignore[arg-type]  # bytes, or mixed: TypeError
