"""The head mirror: the ledger's current state written beside it after every commit,
so that a gateway that cannot open the ledger at all still serves the newest state
(never the pre-import moltis.toml once the ledger has moved on).

`<data dir>/ledger-head.json`, replaced atomically, mode 0600: the seq and hash of the
head, the ledger's location and id, both documents with secrets as the ledger's
references (`{"$secret": ref, "fp": …}`), and the sealed values of those secrets
(AES-256-GCM under the ledger key, as in the database; no plaintext, no placeholder).
Shredding a secret rewrites the mirror without it.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Final

import msgspec

from ledger.core.document import Doc, leaves
from ledger.core.secret_refs import SecretRef
from ledger.engine.ledger import Ledger
from ledger.engine.vault import KeySource, SealedOpener
from ledger.errors import ParseError
from ledger.files.safe_io import read_file, replace_file
from ledger.stores.mirror_store import MirrorConfigStore
from projections.config_view import ConfigState

__all__ = ["MIRROR_NAME", "attach_mirror", "read_mirror", "write_mirror"]

MIRROR_NAME: Final = "ledger-head.json"
FORMAT: Final = "moltis-config-ledger head mirror v1"


def attach_mirror(ledger: Ledger, path: Path, location: str) -> None:
    """Rewrite the mirror after every commit of this process (and once now, if stale)."""
    def hook(state: ConfigState) -> None:
        write_mirror(ledger, state, path, location)

    ledger.after_commit.append(hook)
    try:
        current = json.loads(path.read_bytes())
        stale = current.get("seq") != ledger.head_state().seq or current.get(
            "location") != location
    except (OSError, ValueError, AttributeError):
        stale = True
    if stale and not ledger.backend.read_only and ledger.head_state().seq > 0:
        hook(ledger.head_state())


def write_mirror(ledger: Ledger, state: ConfigState, path: Path, location: str) -> None:
    sealed: dict[str, str] = {}
    for doc in (state.config, state.keys):
        for _path, value in leaves(doc):
            if isinstance(value, SecretRef) and value.ref not in sealed:
                row = ledger.backend.secret(value.ref)
                if row is not None and row.sealed is not None:
                    sealed[value.ref] = base64.b64encode(bytes(row.sealed)).decode()
    data = {"format": FORMAT, "location": location, "seq": state.seq,
            "hash": state.hash.hex(), "ledger_id": ledger.backend.get_meta("ledger_id") or "",
            "config": msgspec.to_builtins(state.config),
            "keys": msgspec.to_builtins(state.keys), "sealed": sealed}
    replace_file(path, json.dumps(data, ensure_ascii=False).encode("utf-8"))


def _refs(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$secret", "fp"} and all(isinstance(v, str) for v in value.values()):
            return SecretRef(ref=value["$secret"], fp=value["fp"])
        return {k: _refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_refs(v) for v in value]
    return value


def read_mirror(path: Path, location: str, keys: KeySource, reason: str
                ) -> MirrorConfigStore | None:
    """The mirror of the ledger at `location` as a read-only store; None when there is
    none (or it mirrors another ledger). A damaged mirror raises ParseError."""
    data = read_file(path)
    if data is None:
        return None
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("not a head mirror")
        if doc.get("location") != location:
            return None
        config = _refs(doc["config"])
        sealed = {str(k): base64.b64decode(v, validate=True)
                  for k, v in dict(doc.get("sealed") or {}).items()}
        seq = int(doc["seq"])
        if not isinstance(config, dict):
            raise ValueError("config is not an object")
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise ParseError(f"{path}: damaged head mirror: {err}") from None
    config_doc: Doc = config
    return MirrorConfigStore(config_doc, seq=seq, where=f"{path} (mirror of seq {seq})",
                             opener=SealedOpener(keys, str(doc.get("ledger_id", "")), sealed),
                             reason=reason)
