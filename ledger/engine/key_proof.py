"""Whether the ledger key held is this ledger's key, proven by what only a holder of
that key could have written: then a `key_check` row that does not match it was
changed, and one that is missing was deleted (not "a wrong key", not "never keyed").

The key check (`ledger_meta.key_check`) is what tells a wrong key from the right one,
and its absence what tells a ledger never keyed. Were either believed alone, changing
or deleting that one row (anyone who can write the file can) would make the holder of
the right key act as if it had none: reads served without the head MAC check, writes
appended without a MAC, a new key check written over the tampering. So before a
mismatch is taken for a wrong key, or a missing row for a ledger never keyed, the
rows this key can prove are asked, none of which a writer with another key (or none)
leaves behind, and none of which a forger can make:

- the sealed fingerprint key (`fp_key`), written by every rotation with the key check;
- every sealed secret (a rotation re-seals every live one, with the key check): ANY
  that opens is the proof, so rows added by a forger (which open with no key) hide
  nothing, whatever their order;
- the head MAC, the head signature, and every snapshot's MAC. A rotation moves all
  of them to the new key in its own transaction (ledger.engine.ledger), so none of
  them is left under an old key for a holder of that key to take for proof; they
  were once asked only while no `fp_key` row said the ledger was rotated, which let a
  junk `fp_key` row planted with a changed key check turn them off. (Still under the
  old key after a rotation: the MAC and signature rows of a head the old key did not
  vouch for, since rotating is no way to adopt it, and the snapshots of a rotation by
  an older release that was never finished. A holder of the old key is then told the
  key check row was changed: the safe side.)

A ledger whose every such row was removed cannot be told from another ledger (or from
one never keyed): its key counts as a wrong key (or none), as for a ledger the key
never opened. Costs nothing on the normal path (the key check matches); on a mismatch
or a missing key check, one AES-GCM open (cryptography) per sealed row until one
opens, and one keyed blake3 per snapshot: that path is rare and its cost is not
what matters there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE, Backend
from ledger.core.canonical import b64_bytes
from ledger.engine.integrity_keys import HeadMac, HeadSignature, IntegrityKeys, history_of
from ledger.engine.lazy_aead import LazyAead
from ledger.engine.sealed_files import subkey
from ledger.errors import LedgerError, VerificationError, WrongKeyError
from projections.snapshots import open_snapshot

__all__ = ["key_check_missing", "key_mismatch", "key_proof"]

_SEALED_V1 = b"\x01"


def key_proof(key: bytes, ledger_id: bytes, backend: Backend, meta: Mapping[str, str]
              ) -> str | None:
    """What proves `key` is this ledger's key ("its sealed secret ...", ...), or None.
    `meta` holds the ledger_meta rows read together with the key check."""
    return next(_proofs(key, ledger_id, backend, meta), None)


def _proofs(key: bytes, ledger_id: bytes, backend: Backend, meta: Mapping[str, str]
            ) -> Iterator[str]:
    """Every proof, cheapest first (a generator: the caller stops at the first). A
    ledger with nothing to ask (a new one, at its first keyed write) costs two reads
    and no cryptography."""
    aead = LazyAead(subkey(key, "secret sealing"))

    def opens(sealed: bytes, label: str) -> bool:
        from cryptography.exceptions import InvalidTag  # only with a sealed value to open

        try:
            aead.decrypt(sealed[:12], sealed[12:], ledger_id + b"\x00" + label.encode())
        except (InvalidTag, ValueError):
            return False
        return True

    keys = IntegrityKeys(key, history_of(meta.get))
    if (text := meta.get(HEAD_MAC)) is not None:
        try:
            if keys.mac_valid(ledger_id, HeadMac.decode(text)):
                yield "its head MAC"
        except ValueError:
            pass
    if fp_key := meta.get("fp_key"):
        try:
            data = b64_bytes(fp_key, "fp_key")
        except ValueError:
            data = b""
        if data and opens(data, "fingerprint key"):
            yield "its sealed fingerprint key (fp_key)"
    for row in backend.secrets():  # every row: a forger's rows sort anywhere
        sealed = row.sealed
        if sealed is not None and bytes(sealed[:1]) == _SEALED_V1 and opens(
                bytes(sealed[1:]), row.ref):
            yield f"its sealed secret {row.ref}"
    if (text := meta.get(HEAD_SIGNATURE)) is not None:
        try:
            sig = HeadSignature.decode(text)
        except ValueError:
            pass
        else:
            if sig.public == keys.public and sig.valid(ledger_id):
                yield "its head signature"
    for seq in backend.snapshot_seqs():
        snap = backend.snapshot_at(seq)
        if snap is not None and snap.seq == seq and open_snapshot(
                keys.snapshot_mac, snap.seq, snap.hash, snap.state) is not None:
            yield f"its snapshot at event {seq} (its MAC)"


def key_mismatch(backend: Backend, where: str, key: bytes, ledger_id: bytes,
                 meta: Mapping[str, str]) -> LedgerError:
    """The error for a key (from `where`) that does not match the key check: a wrong
    key (WrongKeyError, a SecretKeyError: other config stays readable, as without a
    key, with a warning), unless this ledger's own rows prove the key (then the key
    check row was changed: exit 3, as acting as if there were no key would drop every
    check)."""
    proof = key_proof(key, ledger_id, backend, meta)
    if proof is not None:
        return VerificationError(
            f"{backend.location}: the ledger_meta row key_check does not match the ledger "
            f"key from {where}, yet {proof} opens with this key: the key check row was "
            "changed (a key rotation rewrites it together with every sealed value). Nothing "
            "is read or written with it, as that would drop the head MAC check. Check the "
            "ledger with `moltis-ledger verify`, then restore the newest backup "
            "(`moltis-ledger restore FILE`)", None)
    return WrongKeyError(
        f"the ledger key from {where} does not match the key this ledger's secrets were "
        "sealed with (if `moltis-ledger key rotate --new-key-file FILE` was stopped "
        "part-way, finish it with the old key still in place: `moltis-ledger key rotate "
        "--resume --new-key-file FILE`)")


def key_check_missing(backend: Backend, where: str, key: bytes, ledger_id: bytes,
                      meta: Mapping[str, str]) -> str | None:
    """Why a ledger with no key_check row was keyed with `key` after all (its rows
    prove the key: the row was deleted, as a rolled-back log's attacker does with the
    head MAC row), or None: nothing proves it (a ledger never keyed, or every proof
    removed). Every keyed write writes the key check in its transaction, so a ledger
    whose rows open with the key has lost the row; it is not written again over that
    (re-keying over tampering) unless an operator vouches (`sign-head --adopt`)."""
    proof = key_proof(key, ledger_id, backend, meta)
    if proof is None:
        return None
    return (f"the ledger_meta row key_check is missing, yet {proof} opens with the ledger "
            f"key from {where}: the ledger was written with this key and the row was "
            "deleted (a log rolled back or rewritten loses it with the head MAC row)")
