"""The head mirror: the ledger's current state written beside it after every commit,
so that a gateway that cannot open the ledger at all still serves the newest state
(never the pre-import moltis.toml once the ledger has moved on).

`<data dir>/ledger-head.{0,1}.json` (two slots, alternating by seq), mode 0600: the
seq and hash of the head, the ledger's location and id, both documents with secrets as the ledger's
references (`{"$secret": ref, "fp": …}`), and the sealed values of those secrets
(AES-256-GCM under the ledger key, as in the database; no plaintext, no placeholder),
under a keyed MAC: a mirror not written with the ledger key is never served.
Shredding a secret rewrites both slots without it.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from ledger._log import get_logger
from ledger.core.canonical import b64_bytes
from ledger.core.document import Doc, leaves
from ledger.core.events import KIND_SHRED
from ledger.core.secret_refs import SecretRef, refs_in
from ledger.core.wiring import wiring_table
from ledger.engine.head_mark import HeadMark, mark_location, mark_path, raise_mark, read_mark
from ledger.engine.ledger import Ledger
from ledger.engine.sealed_files import open_body, seal_body
from ledger.engine.vault import KeySource, SealedOpener
from ledger.errors import LedgerError, ParseError, SecretKeyError
from ledger.files.dirs import ensure_private_dir
from ledger.files.safe_io import overwrite_private, read_file, read_regular
from ledger.stores.mirror_store import MirrorConfigStore
from projections.config_view import ConfigState

__all__ = ["MIRROR_NAME", "attach_mirror", "read_mirror", "slot_paths", "write_mirror"]

_log = get_logger("ledger.ops.mirror")
MIRROR_NAME: Final = "ledger-head.json"
FORMAT: Final = "moltis-config-ledger head mirror v1"
# A mirror whose documents hold secrets inside a list (the ledger's format 2,
# ledger.engine.format_check): a release that reads only v1 refuses it, as it refuses the
# ledger, instead of serving reference tables in those lists. This release reads both.
FORMAT_SEALED_LISTS: Final = "moltis-config-ledger head mirror v2"


def attach_mirror(ledger: Ledger, path: Path, location: str) -> None:
    """Rewrite the mirror after every commit of this process (and once now, if stale)."""
    def hook(state: ConfigState) -> None:
        write_mirror(ledger, state, path, location)

    ledger.after_commit.append(hook)
    newest = max((_slot_seq(p, location) for p in slot_paths(path)), default=-1)
    stale = newest != ledger.head_state().seq
    if stale and not ledger.backend.read_only and ledger.head_state().seq > 0:
        try:
            hook(ledger.head_state())
        except (LedgerError, OSError) as err:  # derived data: never stops the ledger
            _log.warning("the head mirror cannot be written", error=str(err))


def _slot_seq(path: Path, location: str) -> int:
    """The seq a slot claims for this ledger (unchecked: only to decide whether to
    rewrite it), -1 when none."""
    try:
        doc = json.loads(json.loads(read_regular(path, what="head mirror"))["body"])
        return int(doc["seq"]) if doc.get("location") == location else -1
    except (OSError, LedgerError, ValueError, KeyError, TypeError, AttributeError):
        return -1


def write_mirror(ledger: Ledger, state: ConfigState, path: Path, location: str) -> None:
    sealed: dict[str, str] = {}
    in_lists = False
    for doc in (state.config, state.keys):
        for _path, leaf in leaves(doc):
            for value in refs_in(leaf):
                in_lists = in_lists or leaf.__class__ is list
                if value.ref not in sealed:
                    row = ledger.backend.secret(value.ref)
                    if row is not None and row.sealed is not None:
                        sealed[value.ref] = base64.b64encode(bytes(row.sealed)).decode()
    data = {"format": FORMAT_SEALED_LISTS if in_lists else FORMAT, "location": location,
            "seq": state.seq,
            "written": datetime.now(UTC).isoformat(timespec="seconds"),
            "hash": state.hash.hex(), "ledger_id": ledger.backend.get_meta("ledger_id") or "",
            "marked_at": mark_location(ledger.backend.name, ledger.backend.location),
            "config": msgspec.to_builtins(state.config),
            "keys": msgspec.to_builtins(state.keys), "sealed": sealed}
    body = json.dumps(data, ensure_ascii=False, sort_keys=True)
    # unlock first: after a rotation stopped part-way the vault opens the ledger with the
    # staged new key, and the mirror must be MAC'd with the key its sealed values need
    ledger.vault.integrity()
    # never made here: the vault creates the key for a ledger that never had one, at its
    # first write; a ledger copied without its key gets none (review r15: the mirror
    # made a new random key, which every later write then took for a wrong key)
    key = ledger.vault.keys.load(create=False)
    if key is None:
        raise SecretKeyError(f"no ledger key ({ledger.vault.keys.describe()}): the head "
                             "mirror is not written")
    framed = seal_body(key, body)
    rec = ledger.backend.record(state.seq) if state.seq else None
    slots = slot_paths(path)
    if rec is not None and rec.kind == KIND_SHRED:
        for slot in slots:  # the older slot must not keep the destroyed value either
            _write_slot(slot, framed)
    else:
        _write_slot(slots[state.seq % 2], framed)
    try:
        _advance_mark(ledger, state, key)
    except (LedgerError, OSError) as err:  # the mirror stands; only replays go unnoticed
        _log.warning("the head mark cannot be written", error=str(err))


def _advance_mark(ledger: Ledger, state: ConfigState, key: bytes) -> None:
    """Raise the head mark (`ledger.engine.head_mark`) to this head; never lower it."""
    ledger_id = ledger.backend.get_meta("ledger_id") or ""
    backend = ledger.backend
    raise_mark(mark_path(ledger.vault.keys), key,
               HeadMark(ledger_id, state.seq, state.hash.hex(),
                        mark_location(backend.name, backend.location)))


def slot_paths(path: Path) -> tuple[Path, Path]:
    """The two slots of the mirror `path` (`ledger-head.0.json`, `ledger-head.1.json`)."""
    return (path.with_name(f"{path.stem}.0{path.suffix}"),
            path.with_name(f"{path.stem}.1{path.suffix}"))


def _write_slot(path: Path, data: bytes) -> None:
    """Overwrite one slot in place, without fsync and without a rename: the mirror is
    derived data, and a rename or two fsyncs per commit would cost a gateway's writes
    ~1.5x (a rename alone takes about a millisecond on ext4, the in-place write ~10
    µs). Commits alternate between the two slots (by seq), so a torn write (a crash
    mid-write, a power loss) only loses the newer slot: the older one still holds the
    state before, and a torn slot fails its MAC and is never served."""
    ensure_private_dir(path.parent)
    # a link planted at the slot's name is never followed (it would make every commit
    # overwrite its target); the commit itself stands, the refusal is logged, and the
    # next commit writes the mirror again once the link is gone
    overwrite_private(path, data, "the head mirror")


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
    """The newest valid slot of the mirror of the ledger at `location`, as a read-only
    store; None when there is none for that ledger. Slots that exist but cannot be
    served (a wrong MAC, damage) raise ParseError when no other slot can be.

    After a key rotation stopped part-way (`key rotate --resume` finishes it), the
    mirror is sealed under the staged new key while the key file still holds the old
    one: the staged key is tried first (with the old key, an older slot from before
    the rotation could pass its MAC), then the key file's."""
    staged = _staged_keys(keys)
    if staged is not None:
        try:
            return _read_mirror(path, location, staged, reason)
        except ParseError:
            pass  # a rotation stopped before its commit: the old key sealed the mirror
    return _read_mirror(path, location, keys, reason)


def _staged_keys(keys: KeySource) -> KeySource | None:
    """The staged key of a rotation stopped part-way, as a key source (None if none)."""
    if not keys.from_file or not keys.staged_file.is_file():
        return None
    staged = KeySource(key_file=keys.key_file, env={})
    try:
        staged.use_staged(staged.read_file_key(keys.staged_file))
    except LedgerError:
        return None
    return staged


def _read_mirror(path: Path, location: str, keys: KeySource, reason: str
                 ) -> MirrorConfigStore | None:
    found: list[tuple[MirrorConfigStore, dict[str, Any]]] = []
    problems: list[str] = []
    for slot in slot_paths(path):
        try:
            read = _read_slot(slot, location, keys, reason)
        except ParseError as err:
            problems.append(str(err))
            continue
        if read is not None:
            found.append(read)
    if found:
        store, doc = max(found, key=lambda pair: pair[0].seq)
        _check_mark(store, doc, keys)
        return store
    if problems:
        raise ParseError("; ".join(problems))
    return None


def _check_mark(store: MirrorConfigStore, doc: dict[str, Any], keys: KeySource) -> None:
    """A mirror older than the head mark (a copy put back: a replay) is not served."""
    key = keys.load(create=False)
    mark = read_mark(mark_path(keys), key) if key is not None else None
    if mark is None or mark.ledger_id != str(doc.get("ledger_id", "")):
        return  # another ledger's mark (ledger.engine.head_mark)
    if mark.location and doc.get("marked_at") and mark.location != doc["marked_at"]:
        return  # the mark of a copy elsewhere, written after this ledger
    if store.seq < mark.seq or (store.seq == mark.seq and doc.get("hash") != mark.hash):
        raise ParseError(
            f"the head mirror holds seq {store.seq}, but seq {mark.seq} of this ledger was "
            f"already written (head mark {mark_path(keys)}): an older copy put back, not "
            "served")


def _read_slot(path: Path, location: str, keys: KeySource, reason: str
               ) -> tuple[MirrorConfigStore, dict[str, Any]] | None:
    data = read_file(path, "head mirror")
    if data is None:
        return None
    try:
        key = keys.load(create=False)
        if key is None:
            raise ValueError("no ledger key to check it with")
        body = open_body(data, key)
        doc = json.loads(body)
        if not isinstance(doc, dict) or doc.get("format") not in (FORMAT, FORMAT_SEALED_LISTS):
            raise ValueError("not a head mirror")
        if doc.get("location") != location:
            return None  # the mirror of another ledger
        config = _refs(doc["config"])
        sealed = {str(k): b64_bytes(v, f"sealed value {k}")
                  for k, v in dict(doc.get("sealed") or {}).items()}
        seq = int(doc["seq"])
        if not isinstance(config, dict):
            raise ValueError("config is not an object")
    except (ValueError, KeyError, TypeError, binascii.Error, LedgerError) as err:
        raise ParseError(f"{path}: cannot serve the head mirror: {err}") from None
    config_doc: Doc = config
    written = str(doc.get("written", "at an unknown time"))
    return MirrorConfigStore(config_doc, seq=seq,
                             where=f"{path} (mirror of seq {seq}, written {written})",
                             opener=SealedOpener(keys, str(doc.get("ledger_id", "")), sealed),
                             reason=reason,
                             wiring=wiring_table(ledger_id=str(doc.get("ledger_id") or ""))), doc
