"""Keys that vouch for derived data and for the head, all derived from the ledger key.

- The snapshot MAC key (HKDF-SHA256, its own context): a snapshot whose MAC does not
  check is ignored (the log is replayed instead), so someone who can write the database
  but does not hold the ledger key cannot make readers serve edited snapshot content.
- The head MAC key (HKDF, a third context): every append writes a keyed blake3 MAC
  over (ledger id, seq, head hash) into `ledger_meta` (`head_mac`), in the same
  transaction. It costs about a microsecond, so every head is vouched for; only a
  holder of the ledger key can check it.
- The checkpoint signing key (Ed25519, its seed from HKDF with another context): at
  checkpoints (every `CHECKPOINT_EVERY` events, when the last signature is older than
  `CHECKPOINT_SECS`, on close and on `sign_head()`) the head (seq, hash) is signed into
  `ledger_meta` (`head_signature`). An operator pins the public key's fingerprint once
  (`verify --expect-key`); a log re-chained at or before the signed checkpoint by
  someone without the ledger key then fails, whatever hashes they recomputed. Events
  after the checkpoint are vouched by the head MAC alone (ledger.engine.head_vouch).
  Ledgers signed the old way (a signature on every append) read the same.

Why derive instead of a second key file: the signing key then follows the ledger key
everywhere it already goes (MOLTIS_LEDGER_KEY, the key file, backups of it, rotation
procedures), no new file can be lost or leak on its own, and it is never in the
database. The contexts differ from the sealing and fingerprint subkeys (vault.py), so
no derived key reveals another.
"""

from __future__ import annotations

import functools
import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import blake3
import msgspec

from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE
from ledger.core import constant_time
from ledger.core.canonical import hex_bytes

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["CHECKPOINT_EVERY", "CHECKPOINT_SECS", "HEAD_MAC", "HEAD_SIGNATURE", "HISTORY_ID",
           "HeadMac", "HeadSignature", "IntegrityKeys", "fingerprint", "history_of",
           "parse_fingerprint"]

_MAC_INFO: Final = b"moltis-config-ledger 2026-12 snapshot mac v1"
_SIGN_INFO: Final = b"moltis-config-ledger 2026-12 checkpoint signing v1"
_HEAD_MAC_INFO: Final = b"moltis-config-ledger 2026-12 head mac v1"
_SIGNED: Final = b"moltis-config-ledger checkpoint v1\x00"
# v2 binds the ledger id too: a signature of another ledger signed with the same key
# (a copy grafted in) no longer checks. v1 signatures (before) are still read.
_SIGNED_V2: Final = b"moltis-config-ledger checkpoint v2\x00"
_MACED: Final = b"moltis-config-ledger head v1\x00"
# Checkpoints: an Ed25519 signature costs 50-110 us, too much for every append (the
# head MAC vouches for each head); these bound the events a keyless pinned verify can
# only take on the MAC's word (a window `verify` names).
CHECKPOINT_EVERY: Final = 256
CHECKPOINT_SECS: Final = 1.0
_SEQ = struct.Struct(">Q")
FPR_PREFIX: Final = "ed25519:"
# The meta row naming this copy's history: set anew by a restore, which forks the log
# (the history it replaced, kept in backups/, goes on existing under the same key). The
# snapshot MAC and head MAC keys are derived with it, so a snapshot (or head MAC) of
# another history of the ledger checks under none of this one's (review r8, finding 1:
# the replaced history's MAC'd snapshot anchored past reads of the restored one). A
# ledger never restored has none: its keys are those derived before the row existed.
# The row is the head MAC's to vouch for: changed or removed, no MAC checks.
HISTORY_ID: Final = "history_id"


def _hkdf(key: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) without salt, 32 bytes: extract, then the one expand
    block. Byte for byte what cryptography's `HKDF(SHA256(), 32, salt=None, info)`
    derives (tests/test_startup_costs.py checks both, and RFC 5869's vector), with
    HMAC-SHA256 over the interpreter's built-in SHA-256: a reader that checks a head
    MAC (every keyed `get`) or a snapshot MAC loads neither cryptography (~10 ms of a
    fresh process) nor hashlib/OpenSSL (`import hmac`: 3.7-6 ms)."""
    return _expand(_extract(key), info)


def _extract(key: bytes) -> bytes:
    return _hmac_sha256(b"\x00" * 32, key)  # salt=None: HashLen zeros


def _expand(prk: bytes, info: bytes) -> bytes:
    return _hmac_sha256(prk, info + b"\x01")


_IPAD: Final = bytes(x ^ 0x36 for x in range(256))
_OPAD: Final = bytes(x ^ 0x5C for x in range(256))


def _hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """RFC 2104 HMAC with SHA-256 (64-byte blocks), as `hmac.new(key, msg, "sha256")`;
    keys here are 32 bytes, so never hashed first."""
    sha256 = _sha256()
    if len(key) > 64:
        key = sha256(key).digest()
    key = key.ljust(64, b"\x00")
    inner = sha256(key.translate(_IPAD) + msg).digest()
    return bytes(sha256(key.translate(_OPAD) + inner).digest())


@functools.cache
def _sha256() -> Callable[[bytes], Any]:
    """CPython's built-in SHA-256 (`_sha2` from 3.12, `_sha256` before), which loads
    nothing; hashlib (OpenSSL) where an interpreter has neither. Found once."""
    try:
        if sys.version_info >= (3, 12):  # no failed look-up (a scan of sys.path) on 3.11
            from _sha2 import sha256  # type: ignore[import-not-found]  # no OpenSSL
        else:
            from _sha256 import sha256  # type: ignore[import-not-found]  # 3.11
    except ImportError:
        from hashlib import sha256  # another interpreter: OpenSSL's, same bytes
    return sha256  # type: ignore[no-any-return]


def fingerprint(public: bytes) -> str:
    """`ed25519:` + 32 hex digits of SHA-256 over the raw public key: the value to pin."""
    import hashlib  # only to show or pin a fingerprint: `get` never loads OpenSSL

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


def _message(seq: int, head_hash: bytes, ledger_id: bytes | None = None) -> bytes:
    if ledger_id is None:
        return _SIGNED + _SEQ.pack(seq) + head_hash
    return _SIGNED_V2 + _SEQ.pack(len(ledger_id)) + ledger_id + _SEQ.pack(seq) + head_hash


# Structs, not dataclasses: `get` starts without dataclasses and inspect (issue 16)
class HeadSignature(msgspec.Struct, frozen=True):
    """The signed head as stored in ledger_meta: `v2 <seq> <hash> <public> <signature>`
    (the message binds the ledger id), or `v1 …` (written before: seq and hash only)."""

    seq: int
    hash: bytes
    public: bytes
    signature: bytes
    version: str = "v2"

    def encode(self) -> str:
        return (f"{self.version} {self.seq} {self.hash.hex()} {self.public.hex()} "
                f"{self.signature.hex()}")

    @classmethod
    def decode(cls, text: str) -> HeadSignature:
        try:
            version, seq, h, pub, sig = text.split(" ")
            if version not in ("v1", "v2"):
                raise ValueError(version)
            found = cls(int(seq), hex_bytes(h, "hash", size=32), hex_bytes(pub, "key", size=32),
                        hex_bytes(sig, "signature", size=64), version)
        except ValueError:
            found = None
        if found is None or found.encode() != text:  # one spelling only (no "0044", "AB")
            raise ValueError("the stored head signature is malformed")
        return found

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def valid(self, ledger_id: bytes) -> bool:
        """Does the signature check, for this ledger (v2; a v1 signature binds none)?"""
        # cryptography on first use (CLI start time)
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(
                self.signature, _message(self.seq, self.hash,
                                         ledger_id if self.version == "v2" else None))
        except (InvalidSignature, ValueError):
            return False
        return True


def _mac_message(ledger_id: bytes, seq: int, head_hash: bytes) -> bytes:
    return _MACED + _SEQ.pack(len(ledger_id)) + ledger_id + _SEQ.pack(seq) + head_hash


class HeadMac(msgspec.Struct, frozen=True):
    """The MAC'd head as stored in ledger_meta: `v1 <seq> <hash> <mac>`."""

    seq: int
    hash: bytes
    mac: bytes

    def encode(self) -> str:
        return f"v1 {self.seq} {self.hash.hex()} {self.mac.hex()}"

    @classmethod
    def decode(cls, text: str) -> HeadMac:
        try:
            version, seq, h, mac = text.split(" ")
            if version != "v1" or len(mac) != 64 or len(h) != 64:
                raise ValueError(version)
            found = cls(int(seq), hex_bytes(h, "hash", size=32), hex_bytes(mac, "mac", size=32))
        except ValueError:
            found = None
        if found is None or found.encode() != text:  # one spelling only (no "0044", "AB")
            raise ValueError("the stored head MAC is malformed")
        return found


def history_of(get_meta: Callable[[str], str | None]) -> bytes:
    """The history id of a ledger (its HISTORY_ID meta row; b"" when it has none)."""
    return (get_meta(HISTORY_ID) or "").encode()


class IntegrityKeys:
    """The snapshot MAC key, the head MAC key and the checkpoint signing key of one
    ledger key, for one history of the ledger (`history`: HISTORY_ID; the signing key,
    which an operator pins, is the ledger key's alone)."""

    __slots__ = ("_head_mac", "_prk", "_public", "_seed", "_signer", "snapshot_mac")

    def __init__(self, ledger_key: bytes, history: bytes = b"") -> None:
        self._prk = prk = _extract(ledger_key)
        self._bind(history)
        # The Ed25519 key is made on first use: checking a head MAC or a snapshot MAC
        # (every keyed read) needs neither it nor cryptography
        self._seed = _expand(prk, _SIGN_INFO)
        self._signer: Ed25519PrivateKey | None = None
        self._public: bytes | None = None

    def _bind(self, history: bytes) -> None:
        """The snapshot and head MAC keys of `history` (none: those from before it)."""
        bound = b"" if not history else b" history " + history
        self.snapshot_mac = _expand(self._prk, _MAC_INFO + bound)
        self._head_mac = _expand(self._prk, _HEAD_MAC_INFO + bound)

    def for_history(self, history: bytes) -> IntegrityKeys:
        """The same ledger key's keys for another history (a restore forks the log)."""
        keys = IntegrityKeys.__new__(IntegrityKeys)
        keys._prk, keys._seed, keys._signer, keys._public = (
            self._prk, self._seed, self._signer, self._public)
        keys._bind(history)
        return keys

    def _private(self) -> Ed25519PrivateKey:
        if self._signer is None:
            # cryptography on first use (start time of every keyed read)
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            self._signer = Ed25519PrivateKey.from_private_bytes(self._seed)
        return self._signer

    @property
    def public(self) -> bytes:
        """The raw 32-byte public key (public_bytes_raw: what public_bytes(Encoding.Raw,
        PublicFormat.Raw) gives, without cryptography's serialization package)."""
        if self._public is None:
            self._public = self._private().public_key().public_bytes_raw()
        return self._public

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign_head(self, seq: int, head_hash: bytes, ledger_id: bytes | None = None
                  ) -> HeadSignature:
        """A v2 signature bound to `ledger_id`; without it, a v1 one (how ledgers were
        signed before: only tests that build such a ledger ask for it)."""
        return HeadSignature(seq, head_hash, self.public,
                             self._private().sign(_message(seq, head_hash, ledger_id)),
                             "v1" if ledger_id is None else "v2")

    def mac_head(self, ledger_id: bytes, seq: int, head_hash: bytes) -> HeadMac:
        return HeadMac(seq, head_hash, blake3.blake3(
            _mac_message(ledger_id, seq, head_hash), key=self._head_mac).digest())

    def mac_valid(self, ledger_id: bytes, mac: HeadMac) -> bool:
        expected = self.mac_head(ledger_id, mac.seq, mac.hash).mac
        return constant_time.equal(expected, mac.mac)
