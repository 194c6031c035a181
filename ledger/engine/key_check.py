"""Whether 32 bytes may serve as the ledger key: the length, and plausibly random.

A key is refused when it is not plausibly random. 32 random bytes have about 30
distinct values (fewer than 16 happens with odds far below 2^-100), repeat themselves
after p bytes (the last 32 - p bytes equal the first) for any p <= 24 with odds about
2^-64, never step by a constant difference (odds 2^-128 and below), and are all
printable ASCII with odds (95/256)^32, about 2^-46; so no key made
by `key rotate`, the first-use key file or `openssl rand -hex 32` is ever refused
(tests/test_key_rotation_backups.py checks 300,000). Typed, templated or computed
placeholders are: all one byte, "ab" * 32, "0123456789abcdef" * 4, 00 01 02 ... 1f,
a passphrase typed into the key file as hex ("correct horse battery staple!!12"), a
pattern repeating every 24 bytes or fewer. tests/test_key_handling.py checks both
directions.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from typing import Final

from ledger.errors import SecretKeyError

__all__ = ["MAX_PERIOD", "MIN_DISTINCT_BYTES", "check_key", "key_weakness", "parse_key"]


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
MAX_PERIOD: Final = 24  # a random key repeats after p <= 24 bytes with odds about 2^-64
_HOW_TO_MAKE = ("use a random one: `openssl rand -hex 32` for a new ledger; a ledger whose "
                "secrets are already sealed with this key is moved to a random key by "
                "`moltis-ledger key rotate`")


def key_weakness(key: bytes) -> str | None:
    """Why a 32-byte key is not plausibly random (None when it is). Each test gives up
    at the first byte that rules it out, as a random key does at once: a few
    microseconds per key."""
    distinct = len(set(key))
    if distinct == 1:
        return f"every byte is {key[0]:#04x}, a placeholder rather than a key"
    first = key[0]
    period = next((p for p in range(1, MAX_PERIOD + 1)
                   if key[p] == first and key[p:] == key[:-p]), None)
    if period is not None:
        return f"it repeats a pattern of {period} bytes"
    if min(key) >= 0x20 and max(key) <= 0x7E:
        return ("every byte is printable text: a typed passphrase or word, not random "
                "bytes")
    step = (key[1] - key[0]) % 256
    if all((b - a) % 256 == step for a, b in itertools.pairwise(key)):
        return "its bytes count up or down by a fixed step"
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
