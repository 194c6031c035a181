"""Operator operations on a ledger: diff, blame, rollback, export, bundles, backup and
restore. The CLI only parses, calls these, and renders; so can any other tool.

Every output here is redacted unless the caller explicitly asks to reveal secrets.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import tomlkit

from ledger.core.chain import GENESIS, VerifyReport, verify_records
from ledger.core.document import Doc, diff_documents, get_value, leaves, same_value
from ledger.core.events import Change, Event, Record
from ledger.core.keypaths import Path as KeyPath
from ledger.core.keypaths import format_path, is_prefix
from ledger.core.secret_refs import SecretRef
from ledger.engine.ledger import Commit, Ledger
from ledger.engine.vault import Vault
from ledger.errors import (
    InputError,
    ParseError,
    SecretDestroyedError,
    SecretError,
    StoreError,
    VerificationError,
)
from ledger.files.dirs import ensure_private_dir
from ledger.files.safe_io import replace_file
from ledger.typed.changes import Sealer
from projections.config_view import ConfigState

__all__ = [
    "BlameEntry",
    "DiffEntry",
    "blame",
    "diff_states",
    "display_doc",
    "effective_document",
    "export_documents",
    "import_bundle",
    "read_bundle",
    "rollback",
    "verify_bundle",
    "write_bundle",
    "write_export",
]

DocKind = Literal["config", "keys"]
DOCS: tuple[DocKind, ...] = ("config", "keys")


# ---------------------------------------------------------------------------------
# display


def display_value(value: Any, vault: Vault, *, reveal: bool = False) -> Any:
    """A document value for output: secrets masked (or revealed when asked)."""
    if isinstance(value, SecretRef):
        destroyed = vault.is_destroyed(value)
        if reveal and not destroyed:
            try:
                return vault.open_secret(value)
            except SecretDestroyedError:
                return value.mask()  # withheld by a masked export: there is no value
        return value.mask(destroyed=destroyed)
    if isinstance(value, dict):
        return {k: display_value(v, vault, reveal=reveal) for k, v in value.items()}
    if isinstance(value, list):
        return [display_value(v, vault, reveal=reveal) for v in value]
    return value


def display_doc(doc: Doc, vault: Vault, *, reveal: bool = False) -> dict[str, Any]:
    out = display_value(doc, vault, reveal=reveal)
    assert isinstance(out, dict)
    return out


def effective_document(cfg: Any) -> dict[str, Any]:
    """A typed config (`MoltisConfig`, e.g. the effective one) as a document in TOML
    key form, defaults included, absent (None) values left out, secrets masked."""
    out = _typed_value(cfg)
    assert isinstance(out, dict)
    return out


def _typed_value(value: Any) -> Any:
    import msgspec

    from ledger.core.secret_refs import Secret, mask_text
    from ledger.typed.convert import section_info

    if isinstance(value, Secret):
        return mask_text(value.fingerprint, destroyed=value.is_destroyed)
    if isinstance(value, msgspec.Struct):
        info = section_info(type(value))
        out = {fn.key: _typed_value(getattr(value, fn.attr)) for fn in info.ordered
               if getattr(value, fn.attr) is not None}
        if info.flatten is not None:
            out.update((k, _typed_value(v))
                       for k, v in getattr(value, info.flatten.attr).items() if v is not None)
        return out
    if isinstance(value, dict):
        return {k: _typed_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_typed_value(v) for v in value]
    return value


def display_change(change: Change, vault: Vault) -> dict[str, Any]:
    out: dict[str, Any] = {"op": change.op, "path": format_path(change.path)}
    if change.doc != "config":
        out["doc"] = change.doc
    if change.op == "set":
        out["value"] = display_value(change.new_value, vault)
    return out


def event_json(ev: Event, vault: Vault) -> dict[str, Any]:
    """An event as one JSON-safe, redacted object (for `log --json` and `watch`)."""
    out: dict[str, Any] = {
        "seq": ev.seq, "time": ev.time.isoformat(), "actor": ev.actor, "reason": ev.reason,
        "source": ev.source, "kind": ev.kind, "hash": ev.hash.hex(),
        "changes": [display_change(c, vault) for c in ev.changes],
    }
    if ev.rollback_to is not None:
        out["rollback_to"] = ev.rollback_to
    if ev.shredded:
        out["shredded"] = [r.mask() for r in ev.shredded]
    return out


# ---------------------------------------------------------------------------------
# diff and blame


@dataclass(frozen=True)
class DiffEntry:
    doc: DocKind
    path: str
    kind: Literal["added", "changed", "removed"]
    old: Any = None
    new: Any = None


def diff_states(a: ConfigState, b: ConfigState, vault: Vault,
                prefix: KeyPath = ()) -> list[DiffEntry]:
    """Path-level differences from state `a` to state `b` (secrets masked)."""
    out: list[DiffEntry] = []
    for doc in DOCS:
        old = dict(leaves(a.document(doc)))
        new = dict(leaves(b.document(doc)))
        for path in [*old, *[p for p in new if p not in old]]:
            if prefix and not is_prefix(prefix, path):
                continue
            ov, nv = old.get(path), new.get(path)
            text = format_path(path)
            if path not in new:
                out.append(DiffEntry(doc, text, "removed", display_value(ov, vault)))
            elif path not in old:
                out.append(DiffEntry(doc, text, "added", None, display_value(nv, vault)))
            elif not same_value(ov, nv):
                out.append(DiffEntry(doc, text, "changed", display_value(ov, vault),
                                     display_value(nv, vault)))
    return out


@dataclass(frozen=True)
class BlameEntry:
    doc: DocKind
    path: str
    seq: int
    actor: str
    time: str
    reason: str
    source: str


def blame(ledger: Ledger, state: ConfigState, prefix: KeyPath = ()) -> list[BlameEntry]:
    """For each leaf path, the event that last set it."""
    cache: dict[int, Event | None] = {}
    out: list[BlameEntry] = []
    for doc in DOCS:
        for path, seq in state.provenance(doc):
            if prefix and not is_prefix(prefix, path):
                continue
            if seq not in cache:
                cache[seq] = ledger.event(seq)
            ev = cache[seq]
            if ev is None:
                raise VerificationError(f"event {seq} is missing from the log; run verify", seq)
            out.append(BlameEntry(doc, format_path(path), seq, ev.actor,
                                  ev.time.isoformat(), ev.reason, ev.source))
    return out


# ---------------------------------------------------------------------------------
# rollback


@dataclass
class RollbackResult:
    target: int
    changes: list[Change]
    commit: Commit | None = None
    left_unset: list[str] = field(default_factory=list)


def rollback(ledger: Ledger, to_seq: int, *, dry_run: bool = False,
             leave_destroyed_unset: bool = False, actor: str | None = None,
             reason: str | None = None, source: str = "rollback",
             expected_seq: int | None = None) -> RollbackResult:
    """Append one compensating event that makes both documents equal their state at
    `to_seq`. A target holding a shredded secret is refused, unless told to leave
    those keys unset (the value cannot come back)."""
    target = ledger.state_at(to_seq)
    result = RollbackResult(to_seq, [])

    def changes_for(state: ConfigState, _sealer: Sealer) -> list[Change]:
        changes = (diff_documents(state.config, target.config, "config")
                   + diff_documents(state.keys, target.keys, "keys"))
        destroyed = [c for c in changes if c.secret is not None
                     and ledger.vault.is_destroyed(c.secret)]
        if destroyed and not leave_destroyed_unset:
            paths = ", ".join(format_path(c.path) for c in destroyed)
            raise SecretDestroyedError(
                f"seq {to_seq} holds secrets that were shredded since ({paths}); rolling back "
                "cannot bring them back. Pass --leave-destroyed-unset to roll back without them.")
        if destroyed:
            result.left_unset = [format_path(c.path) for c in destroyed]
            gone = {(c.doc, c.path) for c in destroyed}
            changes = [c for c in changes if (c.doc, c.path) not in gone]
            changes += [Change(op="unset", path=c.path, doc=c.doc) for c in destroyed
                        if get_value(state.document(c.doc), c.path) is not None]
        result.changes = changes
        return changes

    if dry_run:
        changes_for(ledger.head_state(), _NoSealer())
        return result
    result.commit = ledger.apply(changes_for, actor=actor, source=source,
                                 reason=reason or f"rollback to seq {to_seq}",
                                 rollback_to=to_seq, expected_seq=expected_seq)
    return result


class _NoSealer:
    def seal(self, plaintext: str) -> SecretRef:
        raise SecretError("a rollback never seals new secrets")

    def fingerprint(self, plaintext: str) -> str:
        raise SecretError("a rollback never fingerprints new secrets")


# ---------------------------------------------------------------------------------
# export


@dataclass
class ExportFiles:
    config_name: str
    config_text: str
    keys_text: str
    revealed: bool


def export_documents(ledger: Ledger, seq: int, *, fmt: Literal["toml", "json"] = "toml",
                     reveal: bool = False) -> ExportFiles:
    """moltis.toml and provider_keys.json as of `seq`: the way back to the file store.
    Secrets are mask placeholders unless `reveal` (an importer reads the placeholders as
    "withheld", so a masked export re-imports to the same masked view)."""
    state = ledger.state_at(seq)
    config = display_doc(state.config, ledger.vault, reveal=reveal)
    keys = display_doc(state.keys, ledger.vault, reveal=reveal)
    head = ledger.event(seq)
    when = head.time.isoformat(timespec="seconds") if head else "the empty ledger"
    if fmt == "json":
        config_text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        name = "moltis.json"
    else:
        header = tomlkit.document()
        header.add(tomlkit.comment(f"Exported by moltis-ledger from seq {seq} ({when}); "
                                   + ("secrets REVEALED" if reveal else "secrets masked")))
        config_text = tomlkit.dumps(header) + "\n" + tomlkit.dumps(config)
        name = "moltis.toml"
    keys_text = json.dumps(keys, indent=2, ensure_ascii=False) + "\n"
    return ExportFiles(name, config_text, keys_text, reveal)


def write_export(files: ExportFiles, directory: Path) -> list[Path]:
    """Write the export files (mode 0600, directory 0700) atomically."""
    ensure_private_dir(directory)
    written = []
    for name, text in ((files.config_name, files.config_text),
                       ("provider_keys.json", files.keys_text)):
        path = directory / name
        replace_file(path, text.encode("utf-8"))
        written.append(path)
    return written


# ---------------------------------------------------------------------------------
# bundles: the whole log as portable, verifiable JSON lines

BUNDLE_FORMAT = "moltis-config-ledger bundle v1"


def write_bundle(ledger: Ledger, out: IO[str], *, with_secrets: bool = False) -> int:
    """Header, one line per event (stored bytes and hashes), and optionally the sealed
    secret rows (still encrypted: the same ledger key opens them). Returns the count."""
    backend = ledger.backend
    head = backend.head()
    header = {
        "format": BUNDLE_FORMAT, "created": datetime.now(UTC).isoformat(),
        "ledger_id": backend.get_meta("ledger_id"), "events": head.seq,
        "head": head.hash.hex(), "genesis": GENESIS.hex(),
    }
    out.write(json.dumps(header) + "\n")
    count = 0
    for rec in backend.read():
        out.write(json.dumps({
            "seq": rec.seq, "ts": rec.ts, "actor": rec.actor, "reason": rec.reason,
            "source": rec.source, "kind": rec.kind, "payload": rec.payload.decode("utf-8"),
            "prev_hash": rec.prev_hash.hex(), "hash": rec.hash.hex(),
        }, ensure_ascii=False) + "\n")
        count += 1
    if with_secrets:
        for row in backend.secrets():
            out.write(json.dumps({
                "secret": row.ref, "created_seq": row.created_seq,
                "shredded_seq": row.shredded_seq,
                "sealed": base64.b64encode(row.sealed).decode() if row.sealed else None,
            }) + "\n")
        check = backend.get_meta("key_check")
        if check:
            out.write(json.dumps({"meta": {"key_check": check}}) + "\n")
    return count


@dataclass
class Bundle:
    header: dict[str, Any]
    records: list[Record]
    secrets: list[dict[str, Any]]
    meta: dict[str, str]


def read_bundle(path: Path) -> Bundle:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ParseError(f"{path}: cannot read the bundle: {err}") from err
    if not lines:
        raise ParseError(f"{path}: empty bundle")
    try:
        header = json.loads(lines[0])
        if header.get("format") != BUNDLE_FORMAT:
            raise ParseError(f"{path}: not a {BUNDLE_FORMAT} file")
        bundle = Bundle(header, [], [], {})
        for n, line in enumerate(lines[1:], start=2):
            item = json.loads(line)
            if "seq" in item:
                bundle.records.append(Record(
                    int(item["seq"]), int(item["ts"]), item["actor"], item["reason"],
                    item["source"], item["kind"], item["payload"].encode("utf-8"),
                    bytes.fromhex(item["prev_hash"]), bytes.fromhex(item["hash"])))
            elif "secret" in item:
                bundle.secrets.append(item)
            elif "meta" in item:
                bundle.meta.update(item["meta"])
            else:
                raise ParseError(f"{path}: line {n} is not an event, secret or meta line")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ParseError(f"{path}: malformed bundle: {err}") from None
    return bundle


def verify_bundle(path: Path, expect_head: bytes | None = None) -> VerifyReport:
    """Verify a bundle's chain with no database at all."""
    bundle = read_bundle(path)
    report = verify_records(bundle.records, expect_head)
    claimed = bundle.header.get("head")
    if report.ok and claimed and claimed != report.head_hash.hex():
        return VerifyReport(False, report.events, report.head_seq, report.head_hash,
                            report.head_seq, "the bundle's header names another head")
    return report


def import_bundle(path: Path, ledger: Ledger) -> VerifyReport:
    """Load a bundle into an empty ledger, after verifying its chain."""
    bundle = read_bundle(path)
    report = verify_records(bundle.records)
    if not report.ok:
        raise VerificationError(f"{path}: {report.problem}; nothing was imported",
                                report.first_bad_seq)
    backend = ledger.backend
    with backend.write() as txn:
        if txn.head().seq != 0:
            raise StoreError(f"{backend.location}: a bundle can only be imported into an "
                             "empty ledger")
        for start in range(0, len(bundle.records), 1000):
            txn.append(bundle.records[start:start + 1000])
        if bundle.header.get("ledger_id"):
            # sealed secrets are bound to the ledger id they were sealed under
            txn.set_meta("ledger_id", bundle.header["ledger_id"])
        for key, value in bundle.meta.items():
            txn.set_meta(key, value)
        for item in bundle.secrets:
            if item.get("sealed"):
                txn.put_secret(item["secret"], base64.b64decode(item["sealed"]),
                               int(item["created_seq"]))
    ledger.reset_caches()
    ledger.rebuild_snapshots()
    return ledger.verify()


# ---------------------------------------------------------------------------------
# backup and restore


def backup(ledger: Ledger, target: Path) -> VerifyReport:
    """A consistent online copy (while writers run) in a new SQLite file, verified."""
    from ledger.backends.sqlite import SqliteBackend

    if target.exists():
        raise InputError(f"{target}: already exists; choose a new file for the backup")
    source = ledger.backend
    if isinstance(source, SqliteBackend):
        source.backup_to(target)
    else:
        from ledger.ops.transfer import copy_ledger

        copy_ledger(source, SqliteBackend(target))
    copy = SqliteBackend(target, read_only=True)
    try:
        report = verify_records(copy.read())
    finally:
        copy.close()
    return report


def restore(ledger: Ledger, source_file: Path, *, force: bool = False) -> VerifyReport:
    """Replace the ledger with a backup, after verifying the backup's chain. Refused
    (unless `force`) when that would drop events the backup does not have."""
    from ledger.backends.sqlite import SqliteBackend

    source = SqliteBackend(source_file, read_only=True)
    try:
        report = verify_records(source.read())
        if not report.ok:
            raise VerificationError(f"{source_file}: {report.problem}; nothing was restored",
                                    report.first_bad_seq)
        current = ledger.backend.head()
        if current.seq and not force:
            rec = source.record(current.seq)
            if rec is None or rec.hash != current.hash:
                raise InputError(
                    f"restoring {source_file} (head seq {report.head_seq}) would drop or "
                    f"replace events of this ledger (head seq {current.seq}); pass --force "
                    "to restore anyway")
        target = ledger.backend
        if isinstance(target, SqliteBackend):
            target.restore_from(source)
        else:
            raise StoreError(f"restore into a {target.name} ledger: use import-bundle into an "
                             "empty ledger instead")
    finally:
        source.close()
    ledger.reset_caches()
    return ledger.verify()

