"""AES-GCM made on first use, for `ledger.engine.vault`.

Unlocking the vault checks the ledger key and derives the integrity keys that every
keyed read needs (snapshot MAC, head MAC, head mark); only sealing or opening a secret
needs AES-GCM, and with it cryptography (~10 ms of a fresh process: issue 16, 6b).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["LazyAead"]


class LazyAead:
    """AES-GCM under the sealing subkey, made on first use: unlocking (the key check,
    the integrity keys every keyed read needs) loads no cryptography; sealing or
    opening a secret does."""

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._aead: AESGCM | None = None

    def _get(self) -> AESGCM:
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # first secret

            self._aead = AESGCM(self._key)
        return self._aead

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return self._get().encrypt(nonce, data, aad)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return self._get().decrypt(nonce, data, aad)
