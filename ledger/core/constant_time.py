"""`equal(a, b)`: the constant-time comparison of MACs and digests.

It is `hmac.compare_digest` itself (hmac re-exports this C function, and falls back to
it without OpenSSL), imported from where it lives so that comparing a MAC does not load
hashlib and OpenSSL (`import hmac` costs 4-10 ms of every CLI start, `get` included).
"""

from __future__ import annotations

try:
    from _operator import _compare_digest as equal
except ImportError:  # an interpreter without CPython's _operator: the public name
    from hmac import compare_digest as equal  # type: ignore[no-redef]

__all__ = ["equal"]
