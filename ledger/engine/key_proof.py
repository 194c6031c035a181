"""Whether a ledger key that does not match the stored key check is this ledger's key
all the same: then the `key_check` row was changed, not the key.

The key check (`ledger_meta.key_check`) is what tells a wrong key from the right one.
Were it believed alone, changing that one row would make the holder of the right key
act as if it had none: reads served without the head MAC check, writes appended
without a MAC. So before a mismatch is taken for a wrong key, the rows this key can
prove are asked, none of which a writer with another key leaves behind:

- a sealed secret: a rotation re-seals every live one, together with the key check;
- the sealed fingerprint key (`fp_key`), written by every rotation with the key check;
- on a ledger never rotated (no `fp_key`), the head MAC: its key check never changed.

A rotation of an unvouched head leaves the old key's head MAC in place, which is why
the head MAC counts only before any rotation. A ledger whose every such row was
removed cannot be told from another ledger: its key counts as a wrong key, as for a
ledger the key never opened. Costs nothing on the normal path (the key check matches);
on a mismatch, AES-GCM (cryptography) for at most two rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ledger.backends.base import HEAD_MAC, Backend
from ledger.core.canonical import b64_bytes
from ledger.engine.integrity_keys import HeadMac, IntegrityKeys
from ledger.engine.lazy_aead import LazyAead
from ledger.engine.sealed_files import subkey
from ledger.errors import LedgerError, SecretKeyError, VerificationError

__all__ = ["key_mismatch", "key_proof"]

_SEALED_V1 = b"\x01"


def key_proof(key: bytes, ledger_id: bytes, meta: Mapping[str, str],
              first_sealed: Callable[[], tuple[str, bytes] | None]) -> str | None:
    """What proves `key` is this ledger's key ("its sealed secret ...", ...), or None.
    `meta` holds the ledger_meta rows read together with the key check;
    `first_sealed()` is one live secret's (ref, sealed value), or None."""
    from cryptography.exceptions import InvalidTag  # only when the key check mismatched

    aead = LazyAead(subkey(key, "secret sealing"))

    def opens(sealed: bytes, label: str) -> bool:
        try:
            aead.decrypt(sealed[:12], sealed[12:], ledger_id + b"\x00" + label.encode())
        except (InvalidTag, ValueError):
            return False
        return True

    row = first_sealed()
    if row is not None:
        ref, sealed = row
        if sealed.startswith(_SEALED_V1) and opens(sealed[1:], ref):
            return f"its sealed secret {ref}"
    fp_key = meta.get("fp_key")
    if fp_key:
        try:
            data = b64_bytes(fp_key, "fp_key")
        except ValueError:
            return None
        return "its sealed fingerprint key (fp_key)" if opens(data, "fingerprint key") else None
    text = meta.get(HEAD_MAC)
    if text is None:
        return None
    try:
        mac = HeadMac.decode(text)
    except ValueError:
        return None
    return "its head MAC" if IntegrityKeys(key).mac_valid(ledger_id, mac) else None


def key_mismatch(backend: Backend, where: str, key: bytes, ledger_id: bytes,
                 meta: Mapping[str, str]) -> LedgerError:
    """The error for a key (from `where`) that does not match the key check: a wrong
    key (SecretKeyError: other config stays readable, as without a key), unless this
    ledger's own rows prove the key (then the key check row was changed: exit 3, as
    acting as if there were no key would drop every check)."""
    def first_sealed() -> tuple[str, bytes] | None:
        for row in backend.secrets():
            if row.sealed is not None:
                return row.ref, bytes(row.sealed)
        return None

    proof = key_proof(key, ledger_id, meta, first_sealed)
    if proof is not None:
        return VerificationError(
            f"{backend.location}: the ledger_meta row key_check does not match the ledger "
            f"key from {where}, yet {proof} opens with this key: the key check row was "
            "changed (a key rotation rewrites it together with every sealed value). Nothing "
            "is read or written with it, as that would drop the head MAC check. Check the "
            "ledger with `moltis-ledger verify`, then restore the newest backup "
            "(`moltis-ledger restore FILE`)", None)
    return SecretKeyError(
        f"the ledger key from {where} does not match the key this ledger's secrets were "
        "sealed with (if `moltis-ledger key rotate --new-key-file FILE` was stopped "
        "part-way, finish it with the old key still in place: `moltis-ledger key rotate "
        "--resume --new-key-file FILE`)")
