"""Keys that vouch for derived data and for the head, all derived from the ledger key.

- The snapshot MAC key (HKDF-SHA256, its own context): a snapshot whose MAC does not
  check is ignored (the log is replayed instead), so someone who can write the database
  but does not hold the ledger key cannot make readers serve edited snapshot content.
- The checkpoint signing key (Ed25519, its seed from HKDF with another context): every
  append signs (seq, head hash) into `ledger_meta`. An operator pins the public key's
  fingerprint once (`verify --expect-key`); a log re-chained by someone without the
  ledger key then fails, whatever hashes they recomputed.

Why derive instead of a second key file: the signing key then follows the ledger key
everywhere it already goes (MOLTIS_LEDGER_KEY, the key file, backups of it, rotation
procedures), no new file can be lost or leak on its own, and it is never in the
database. The contexts differ from the sealing and fingerprint subkeys (vault.py), so
no derived key reveals another.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ledger.backends.base import HEAD_SIGNATURE

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["HEAD_SIGNATURE", "HeadSignature", "IntegrityKeys", "fingerprint",
           "parse_fingerprint"]

_MAC_INFO: Final = b"moltis-config-ledger 2026-12 snapshot mac v1"
_SIGN_INFO: Final = b"moltis-config-ledger 2026-12 checkpoint signing v1"
_SIGNED: Final = b"moltis-config-ledger checkpoint v1\x00"
_SEQ = struct.Struct(">Q")
FPR_PREFIX: Final = "ed25519:"


def _hkdf(key: bytes, info: bytes) -> bytes:
    # cryptography on first use: `get` never needs it (CLI start time)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def fingerprint(public: bytes) -> str:
    """`ed25519:` + 32 hex digits of SHA-256 over the raw public key: the value to pin."""
    return FPR_PREFIX + hashlib.sha256(public).hexdigest()[:32]


def parse_fingerprint(text: str) -> str:
    """A pinned value as given by an operator: a fingerprint (with or without the
    prefix) or the whole public key in hex; returned as a fingerprint."""
    value = text.strip().lower().removeprefix(FPR_PREFIX)
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return fingerprint(bytes.fromhex(value))
    if len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return FPR_PREFIX + value
    raise ValueError(f"{text.strip()[:80]!r} is neither a key fingerprint (ed25519: and 32 hex "
                     "digits, as verify prints it) nor a public key (64 hex digits)")


def _message(seq: int, head_hash: bytes) -> bytes:
    return _SIGNED + _SEQ.pack(seq) + head_hash


@dataclass(frozen=True, slots=True)
class HeadSignature:
    """The signed head as stored in ledger_meta: `v1 <seq> <hash> <public> <signature>`."""

    seq: int
    hash: bytes
    public: bytes
    signature: bytes

    def encode(self) -> str:
        return f"v1 {self.seq} {self.hash.hex()} {self.public.hex()} {self.signature.hex()}"

    @classmethod
    def decode(cls, text: str) -> HeadSignature:
        try:
            version, seq, h, pub, sig = text.split(" ")
            if version != "v1":
                raise ValueError(version)
            return cls(int(seq), bytes.fromhex(h), bytes.fromhex(pub), bytes.fromhex(sig))
        except ValueError:
            raise ValueError("the stored head signature is malformed") from None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def valid(self) -> bool:
        # cryptography on first use (CLI start time)
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(
                self.signature, _message(self.seq, self.hash))
        except (InvalidSignature, ValueError):
            return False
        return True


class IntegrityKeys:
    """The snapshot MAC key and the checkpoint signing key of one ledger key."""

    __slots__ = ("_signer", "public", "snapshot_mac")

    def __init__(self, ledger_key: bytes) -> None:
        # cryptography on first use (CLI start time)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._signer: Ed25519PrivateKey
        self.snapshot_mac = _hkdf(ledger_key, _MAC_INFO)
        self._signer = Ed25519PrivateKey.from_private_bytes(_hkdf(ledger_key, _SIGN_INFO))
        self.public = self._signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign_head(self, seq: int, head_hash: bytes) -> HeadSignature:
        return HeadSignature(seq, head_hash, self.public,
                             self._signer.sign(_message(seq, head_hash)))
