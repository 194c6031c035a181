"""Whether 32 bytes may serve as the ledger key: the length, and plausibly random.

A key is refused when it is not plausibly random. 32 random bytes have about 30
distinct values (fewer than 16 happens with odds far below 2^-100), never repeat their
first half and never step by a constant difference (odds 2^-128 and below), so no key
made by `key rotate`, the first-use key file or `openssl rand -hex 32` is ever refused;
typed, templated or computed placeholders (all one byte, "ab" * 32, "0123456789abcdef"
* 4, 00 01 02 ... 1f) are. tests/test_key_handling.py checks both directions.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from typing import Final

from ledger.errors import SecretKeyError

__all__ = ["MIN_DISTINCT_BYTES", "check_key", "key_weakness", "parse_key"]


def parse_key(text: str, where: str, *, strict: bool = True) -> bytes:
    """32 bytes, as 64 hex digits or base64; the error names where it came from.
    `strict=False` accepts a weak key (only to rotate away from it)."""
    text = text.strip()
    try:
        if len(text) == 64:
            return check_key(bytes.fromhex(text), where, strict=strict)
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_"
                               if "-" in text or "_" in text else None, validate=True)
        if len(raw) == 32:
            return check_key(raw, where, strict=strict)
    except (ValueError, binascii.Error):
        pass
    raise SecretKeyError(f"{where}: the ledger key must be 32 bytes as 64 hex digits or base64")


MIN_DISTINCT_BYTES: Final = 16
_HOW_TO_MAKE = ("use a random one: `openssl rand -hex 32` for a new ledger; a ledger whose "
                "secrets are already sealed with this key is moved to a random key by "
                "`moltis-ledger key rotate`")


def key_weakness(key: bytes) -> str | None:
    """Why a 32-byte key is not plausibly random (None when it is)."""
    if len(set(key)) == 1:
        return f"every byte is {key[0]:#04x}, a placeholder rather than a key"
    if key[: len(key) // 2] == key[len(key) // 2:]:
        return "it repeats a short pattern"
    steps = {(b - a) % 256 for a, b in itertools.pairwise(key)}
    if len(steps) == 1:
        return "its bytes count up or down by a fixed step"
    distinct = len(set(key))
    if distinct < MIN_DISTINCT_BYTES:
        return (f"it has only {distinct} distinct byte values (a random key has about 30; "
                f"fewer than {MIN_DISTINCT_BYTES} is refused)")
    return None


def check_key(key: bytes, where: str, *, strict: bool = True) -> bytes:
    """Refuse a key that is not 32 bytes or not plausibly random (`key_weakness`):
    sealing under a guessable key would protect nothing. The error names where the
    key came from and how to make a good one. `strict=False` (only `key rotate`, to
    re-seal what a weak key already sealed) checks the length alone."""
    if len(key) != 32:
        raise SecretKeyError(f"{where}: the ledger key must be 32 bytes, not {len(key)}")
    weakness = key_weakness(key) if strict else None
    if weakness is not None:
        raise SecretKeyError(f"{where}: the ledger key is not random: {weakness}; "
                             f"{_HOW_TO_MAKE}")
    return key
