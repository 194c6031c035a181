"""Keys derived from the ledger key, and what is sealed or MAC'd with it outside the
database: whole files (migration backups) and their manifests, and the MAC'd frames of
the head mirror and the head mark. (Split from `ledger.engine.vault`, which re-exports
these names; the derivations are unchanged.)"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Final

import blake3

from ledger.core import constant_time
from ledger.errors import SecretKeyError

__all__ = ["SEALED_FILE_MAGIC", "backup_manifest_mac", "file_mac", "open_blob", "open_body",
           "seal_blob", "seal_body", "subkey"]


def subkey(master: bytes, purpose: str) -> bytes:
    """A key for one purpose, derived from the ledger key (blake3 derive_key)."""
    return blake3.blake3(master, derive_key_context=f"moltis-config-ledger 2026 {purpose}").digest()


def file_mac(key: bytes, data: bytes) -> str:
    """A keyed MAC of derived data kept outside the database (the head mirror), so a
    copy written by someone without the ledger key is never served."""
    return blake3.blake3(data, key=subkey(key, "mirror mac")).hexdigest()


def seal_body(key: bytes, body: str) -> bytes:
    """`body` (JSON text) framed with its `file_mac`, as the mirror and the head mark
    keep it on disk: `{"mac": ..., "body": ...}`."""
    return json.dumps({"mac": file_mac(key, body.encode()), "body": body}).encode()


def open_body(data: bytes, key: bytes) -> str:
    """The body of a `seal_body` frame; ValueError (also for malformed JSON) when the
    frame is not one or its MAC does not match this key."""
    outer = json.loads(data)
    body = outer.get("body") if isinstance(outer, dict) else None
    if not isinstance(body, str) or not constant_time.equal(
            str(outer.get("mac", "")), file_mac(key, body.encode())):
        raise ValueError("its MAC does not match the ledger key (not written by this "
                         "ledger, or changed since)")
    return body


def backup_manifest_mac(key: bytes, manifest: Mapping[str, Any]) -> str:
    """A keyed MAC of a migration backup's manifest (all but its `mac`): a manifest
    edited by someone without the ledger key (an entry marked unsealed, another file
    name) is refused by `migrate --from-backup` and `unseal-backup`."""
    body = json.dumps({k: v for k, v in manifest.items() if k != "mac"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()
    return blake3.blake3(body, key=subkey(key, "backup manifest mac")).hexdigest()


SEALED_FILE_MAGIC: Final = b"moltis-ledger sealed file v1\n"


def seal_blob(key: bytes, data: bytes, label: str) -> bytes:
    """AES-256-GCM under the key's "file sealing" subkey; the label is associated data."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    aead = AESGCM(subkey(key, "file sealing"))
    return SEALED_FILE_MAGIC + nonce + aead.encrypt(nonce, data, label.encode())


def open_blob(key: bytes, sealed: bytes, label: str, where: str) -> bytes:
    """The bytes `seal_blob` sealed; SecretKeyError names `where` on a wrong key or a
    tampered file."""
    if not sealed.startswith(SEALED_FILE_MAGIC) or len(sealed) < len(SEALED_FILE_MAGIC) + 28:
        raise SecretKeyError(f"{where}: not a file sealed by moltis-ledger")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    body = sealed[len(SEALED_FILE_MAGIC):]
    try:
        return AESGCM(subkey(key, "file sealing")).decrypt(body[:12], body[12:],
                                                            label.encode())
    except InvalidTag:
        raise SecretKeyError(f"{where}: does not open with this ledger key (wrong key, or "
                             "the file was changed)") from None
