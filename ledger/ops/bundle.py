"""Bundles: the whole log as portable, verifiable JSON lines (`bundle`), checked with
no database (`verify-bundle`), and loaded into an empty ledger (`import-bundle`) only
once every line, the key its secrets are sealed with and its own vouching hold."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ledger.backends.base import Head, SecretRow
from ledger.backends.memory import MemoryBackend
from ledger.backends.sqlite import SqliteBackend
from ledger.core.canonical import b64_bytes, hex_bytes
from ledger.core.chain import GENESIS, VerifyReport, verify_records
from ledger.core.events import Record
from ledger.engine.integrity_keys import (
    HEAD_MAC,
    HEAD_SIGNATURE,
    HISTORY_ID,
    HeadMac,
    HeadSignature,
)
from ledger.engine.key_proof import key_proof
from ledger.engine.ledger import Ledger
from ledger.engine.vault import KeySource
from ledger.errors import (
    FormatVersionError,
    LedgerError,
    ParseError,
    VerificationError,
)
from ledger.files.safe_io import read_regular
from ledger.ops.live_state import (
    READ_TRIES,
    key_rows,
    moved_error,
    replaced,
    secrets_as_of,
    vouches_up_to,
)
from ledger.ops.stale_stages import import_stage_prefix, remove_stale_import_stages
from ledger.ops.transfer import check_empty, copy_ledger, finish_copy, stage_copy
from projections.config_view import ConfigState

# ---------------------------------------------------------------------------------
# bundles: the whole log as portable, verifiable JSON lines

BUNDLE_FORMAT = "moltis-config-ledger bundle v1"
# The header's "version": what a reader must understand to read the bundle. Bundles
# written before the field are version 1; a reader refuses a newer version rather than
# read it by rules that may no longer hold. Raise it when a change to the lines would
# make an older reader misread them (not for lines an older reader already refuses).
BUNDLE_VERSION = 1


def replaceable_by_bundle(path: Path) -> bool:
    """Whether `bundle -o path` may replace what is there: nothing, a link (replaced,
    never followed) or an earlier bundle (its first bytes say so). Any other file may be
    the ledger, its key or a config file (review r15: `bundle -o <data>/moltis.db`
    destroyed the ledger, `-o ledger.key` every secret)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if stat.S_ISLNK(st.st_mode):
        return True
    start = json.dumps({"format": BUNDLE_FORMAT})[:-1].encode()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, len(start)) == start
    finally:
        os.close(fd)


def write_bundle(ledger: Ledger, out: IO[str], *, with_secrets: bool = False) -> Head:
    """Header, one line per event (stored bytes and hashes), and optionally the sealed
    secret rows (still encrypted: the same ledger key opens them). Returns the head the
    bundle holds (its event count is its seq).
    Only what the ledger serves is written: its head as the read proof vouches for it
    (head mark, head MAC or signature; a log re-chained without the key is refused,
    VerificationError), and the events it descends from (review r8, finding 2); its
    meta and secret rows are of that state (`ledger.ops.live_state`)."""
    served, meta, secrets = _bundle_state(ledger, with_secrets)
    head = Head(served.seq, served.hash, served.ts)
    header = {
        "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
        "created": datetime.now(UTC).isoformat(),
        "ledger_id": meta.get("ledger_id"), "events": head.seq,
        "head": head.hash.hex(), "genesis": GENESIS.hex(),
    }
    out.write(json.dumps(header) + "\n")
    try:
        # the head the header names, even while writers run
        for rec in ledger.records(until=head.seq):
            out.write(json.dumps({
                "seq": rec.seq, "ts": rec.ts, "actor": rec.actor, "reason": rec.reason,
                "source": rec.source, "kind": rec.kind, "payload": rec.payload.decode("utf-8"),
                "prev_hash": rec.prev_hash.hex(), "hash": rec.hash.hex(),
            }, ensure_ascii=False) + "\n")
    except VerificationError:
        if replaced(ledger.backend, head):  # a restore forked it meanwhile, not damage
            raise moved_error(ledger.backend.location, "the bundle was being written"
                              ) from None
        raise
    if with_secrets:
        for row in secrets:
            out.write(json.dumps({
                "secret": row.ref, "created_seq": row.created_seq,
                "shredded_seq": row.shredded_seq,
                "sealed": base64.b64encode(row.sealed).decode() if row.sealed else None,
            }) + "\n")
        check = meta.get("key_check")
        if check:
            out.write(json.dumps({"meta": {"key_check": check}}) + "\n")
    # the head's own MAC and signature (no secret: a MAC and a public signature), so an
    # import under the same key stays vouched for; readers before this ignore nothing
    # (an older reader refuses the line), readers since accept bundles without it
    vouch = {k: v for k in (HEAD_SIGNATURE, HEAD_MAC, HISTORY_ID)
             if (v := meta.get(k)) is not None and vouches_up_to(k, v, head.seq)}
    if vouch:
        out.write(json.dumps({"meta": vouch}) + "\n")
    return head


def _bundle_state(ledger: Ledger, with_secrets: bool
                  ) -> tuple[ConfigState, dict[str, str], list[SecretRow]]:
    """The head the bundle names, the meta rows read with it and (`with_secrets`) the
    secret rows of that state, all read before the first line is written: a writer
    committing between head and meta moves the head MAC past the head (review r18), so
    they are read again until they agree (rows naming a later event are left out
    otherwise); a rotation, fork or shred between them and the secret rows is read
    again, and refused after READ_TRIES (review r25)."""
    for _ in range(READ_TRIES):
        for _ in range(READ_TRIES):
            served = ledger.head_state()
            meta = ledger.backend.meta_items()
            if all(vouches_up_to(k, v, served.seq) for k, v in meta.items()):
                break
        if not with_secrets:
            return served, meta, []
        secrets = secrets_as_of(ledger.backend, served.seq)
        if secrets is not None and key_rows(ledger.backend.meta_items()) == key_rows(meta):
            return served, meta, secrets
    raise moved_error(ledger.backend.location, "the bundle was being written")


# A bundle holds the whole history: larger than a config file may be, but still read
# whole, so bounded (a FIFO or /dev/zero named as the bundle is refused, not read).
MAX_BUNDLE_BYTES = 1 << 30


@dataclass
class Bundle:
    header: dict[str, Any]
    records: list[Record]
    secrets: list[dict[str, Any]]
    meta: dict[str, str]


def _check_version(path: Path, version: Any) -> None:
    if type(version) is not int or version < 1:
        raise ParseError(f"{path}: malformed bundle: the header's version must be a whole "
                         f"number from 1, not {json.dumps(version)}")
    if version > BUNDLE_VERSION:
        raise FormatVersionError(
            f"{path}: the bundle is version {version}, written by a newer moltis-ledger; "
            f"this one reads bundle versions up to {BUNDLE_VERSION}: upgrade moltis-ledger "
            "to read it")


def read_bundle(path: Path) -> Bundle:
    try:
        text = read_regular(path, MAX_BUNDLE_BYTES, what="bundle").decode("utf-8")
        # one document per "\n"-ended line; never str.splitlines(), which also breaks at
        # U+2028, U+0085, \x1c.. that a value's text holds unescaped
        lines = text.split("\n")
        if lines and not lines[-1]:
            lines.pop()
    except (OSError, UnicodeDecodeError) as err:
        raise ParseError(f"{path}: cannot read the bundle: {err}") from err
    if not lines:
        raise ParseError(f"{path}: empty bundle")
    try:
        header = json.loads(lines[0])
        if header.get("format") != BUNDLE_FORMAT:
            raise ParseError(f"{path}: not a {BUNDLE_FORMAT} file")
        _check_version(path, header.get("version", 1))
        bundle = Bundle(header, [], [], {})
        for n, line in enumerate(lines[1:], start=2):
            item = json.loads(line)
            if "seq" in item:
                bundle.records.append(Record(
                    int(item["seq"]), int(item["ts"]), item["actor"], item["reason"],
                    item["source"], item["kind"], item["payload"].encode("utf-8"),
                    hex_bytes(item["prev_hash"], f"line {n}: prev_hash", size=32),
                    hex_bytes(item["hash"], f"line {n}: hash", size=32)))
            elif "secret" in item:
                _check_secret_line(path, n, item)
                if item.get("sealed") is not None:
                    try:
                        item["sealed"] = b64_bytes(item["sealed"], "the sealed value")
                    except ValueError:
                        raise ParseError(f"{path}: line {n}: the sealed value is not valid "
                                         "base64") from None
                bundle.secrets.append(item)
            elif "meta" in item:
                bundle.meta.update(item["meta"])
            else:
                raise ParseError(f"{path}: line {n} is not an event, secret or meta line")
    except ParseError:
        raise  # already names the file and the problem
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ParseError(f"{path}: malformed bundle: {err}") from None
    last = max((r.seq for r in bundle.records), default=0)
    # a secret made or shredded after the last event: of a state the bundle does not
    # hold (a bundle written while a shred committed, before review r25), which would
    # import as a ledger that never verifies ("a faked shred")
    if any(max(item["created_seq"], item.get("shredded_seq") or 0) > last
           for item in bundle.secrets):
        raise ParseError(f"{path}: malformed bundle: a secret line is newer than its last "
                         "event (made or shredded after it); write the bundle again")
    return bundle


def _check_secret_line(path: Path, n: int, item: dict[str, Any]) -> None:
    """A secret line's fields have the types and form a bundle writes (the reference
    text, the seqs as numbers): anything else is refused here, naming the line, rather
    than stored as a reference no event names or failing later as a bare error."""
    ref, created, shredded = item.get("secret"), item.get("created_seq"), \
        item.get("shredded_seq")
    if not (isinstance(ref, str) and 0 < len(ref) <= 64 and ref.isascii()
            and ref.replace("-", "").replace("_", "").isalnum()):
        raise ParseError(f"{path}: line {n}: the secret's reference is not one a ledger "
                         "writes")
    for name, seq in (("created_seq", created), ("shredded_seq", shredded)):
        if (seq is not None or name == "created_seq") and (
                isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
            raise ParseError(f"{path}: line {n}: {name} is not an event's seq")


def verify_bundle(path: Path, expect_head: bytes | None = None) -> VerifyReport:
    """Verify a bundle's chain with no database at all."""
    bundle = read_bundle(path)
    report = verify_records(bundle.records, expect_head)
    claimed = bundle.header.get("head")
    if report.ok and claimed and claimed != report.head_hash.hex():
        return VerifyReport(False, report.events, report.head_seq, report.head_hash,
                            report.head_seq, "the bundle's header names another head")
    return report


# what a bundle's meta line may set (the head's MAC and signature: checked under the
# key at hand before anything is vouched for, ledger.ops.transfer.stage_copy)
_IMPORTED_META = frozenset({"key_check", HEAD_SIGNATURE, HEAD_MAC, HISTORY_ID})
_HEX = re.compile(r"[0-9a-f]+")


def _checked_meta(bundle: Bundle, path: Path) -> dict[str, str]:
    """Bundle meta is outside the chain: only values that are validated here go in
    (key_check only well-formed here; whether it is this ledger key's is `_same_key`)."""
    for key in bundle.meta:
        if key not in _IMPORTED_META:
            raise ParseError(f"{path}: the bundle's meta sets {key!r}, which a bundle may not "
                             "set (only key_check, the head MAC and signature, and "
                             "history_id); nothing was imported")
    vouch: dict[str, str] = {}
    for key, decode in ((HEAD_SIGNATURE, HeadSignature.decode), (HEAD_MAC, HeadMac.decode)):
        value = bundle.meta.get(key)
        if value is None:
            continue
        try:
            decode(value if isinstance(value, str) else "")
        except ValueError:
            raise ParseError(f"{path}: the bundle's {key} is malformed; nothing was "
                             "imported") from None
        vouch[key] = value
    history = bundle.meta.get(HISTORY_ID)  # what the head MAC was made under
    if history is not None:
        if not isinstance(history, str) or len(history) != 32 or not _HEX.fullmatch(history):
            raise ParseError(f"{path}: the bundle's {HISTORY_ID} is malformed; nothing was "
                             "imported")
        vouch[HISTORY_ID] = history
    check = bundle.meta.get("key_check")
    if check is None:
        return vouch
    if not isinstance(check, str) or len(check) != 64 or not _HEX.fullmatch(check):
        raise ParseError(f"{path}: the bundle's key_check is malformed; nothing was imported")
    return {**vouch, "key_check": check}


def _same_key(checked: CheckedBundle, keys: KeySource) -> None:
    check = checked.meta.get("key_check")
    if any(item.get("sealed") for item in checked.bundle.secrets) and \
            keys.load(create=False) is None:
        # a key made for the import would open none of them (review r15)
        raise ParseError(f"{checked.path}: the bundle holds sealed secrets and there is no "
                         f"ledger key ({keys.describe()}): put the key they were sealed with "
                         "in place, then import again; nothing was imported")
    if check is None:
        _sealed_with(checked, keys)
        return
    mine = keys.key_check_for(checked.ledger_id or "")
    if mine is not None and mine != check:
        raise ParseError(f"{checked.path}: the bundle's secrets were sealed with another "
                         f"ledger key than {keys.describe()}; set the key they "
                         "were sealed with, then import again; nothing was imported")


@dataclass
class CheckedBundle:
    """A bundle that `check_bundle` read and checked, ready to load (`import_bundle`)."""

    path: Path
    bundle: Bundle
    records: list[Record]
    ledger_id: str | None
    meta: dict[str, str]


def _sealed_with(checked: CheckedBundle, keys: KeySource) -> None:
    """A bundle without a key_check line (hand-edited, or from a tool that kept events
    and secrets only) that holds sealed secrets: refused unless one of them (or its head
    MAC or signature) proves the key at hand, as a restore refuses such a backup (review
    r15: another key's secrets were loaded, and the next write keyed the ledger with
    this key's check over them)."""
    sealed = [item for item in checked.bundle.secrets if item.get("sealed")]
    key = keys.load(create=False)
    if not sealed or key is None or checked.ledger_id is None:
        return
    rows = MemoryBackend()
    with rows.write() as txn:
        for item in sealed:
            txn.put_secret(str(item["secret"]), item["sealed"], int(item["created_seq"]))
    if key_proof(key, checked.ledger_id.encode(), rows, checked.meta) is None:
        raise ParseError(f"{checked.path}: the bundle holds sealed secrets but no key_check "
                         f"line, and none of them opens with the ledger key from "
                         f"{keys.describe()}: they were sealed with another key; set the key "
                         "they were sealed with, then import again; nothing was imported")


def check_bundle(path: Path, keys: KeySource | None = None) -> CheckedBundle:
    """Read a bundle and check all of it that needs no target ledger: its version and
    form, its chain, every event as an append would (ledger.ops.import_checks), that
    every payload replays, its ledger_id and meta, and (with the `keys` the target
    will be opened with) that its sealed secrets are this key's. Run before the target
    database is opened, so a refused bundle creates nothing (`moltis-ledger
    import-bundle`)."""
    from ledger.ops.import_checks import checked_records  # lazy: only bundle import needs these
    from projections.config_view import EMPTY_STATE, replay  # lazy: only bundle import needs these

    bundle = read_bundle(path)
    report = verify_records(bundle.records)
    if not report.ok:
        raise VerificationError(f"{path}: {report.problem}; nothing was imported",
                                report.first_bad_seq)
    claimed = bundle.header.get("head")
    if claimed and claimed != report.head_hex:
        raise VerificationError(f"{path}: the bundle's header names another head than its "
                                "last event; nothing was imported", report.head_seq)
    records = list(checked_records(bundle.records, str(path)))
    try:
        replay(EMPTY_STATE, records)  # every payload applies, not only decodes
    except LedgerError as err:
        raise VerificationError(f"{path}: the events do not replay ({err}); nothing was "
                                "imported", None) from None
    ledger_id = bundle.header.get("ledger_id")
    if ledger_id is not None and (not isinstance(ledger_id, str)
                                  or not _HEX.fullmatch(ledger_id) or len(ledger_id) > 64):
        raise ParseError(f"{path}: the bundle's ledger_id is malformed; nothing was imported")
    checked = CheckedBundle(path, bundle, records, ledger_id, _checked_meta(bundle, path))
    if keys is not None:
        _same_key(checked, keys)
    return checked


def import_bundle(source: Path | CheckedBundle, ledger: Ledger) -> VerifyReport:
    """Load a bundle (a path, or what `check_bundle` returned) into an empty ledger,
    after verifying its chain and checking every event as an append would. The bundle
    is first built into a private staging file, where its head is signed with this
    ledger key only if the bundle's own head MAC or signature vouches for it under this
    key (else `sign-head --adopt`) and it gets a history of its own
    (`ledger.ops.transfer.stage_copy`); then it is copied into the ledger in one
    transaction: a crash leaves the ledger empty or holding the whole, forked copy."""
    checked = source if isinstance(source, CheckedBundle) else check_bundle(source)
    _same_key(checked, ledger.vault.keys)  # the target's own key (a caller may not have asked)
    bundle, records, ledger_id, meta = (checked.bundle, checked.records, checked.ledger_id,
                                        checked.meta)
    backend = ledger.backend
    check_empty(backend)  # before the staging is built (copy_ledger checks it again)
    # sealed secrets are bound to the ledger id they were sealed under: the bundle's, or
    # (a bundle that names none) the target's own, as a direct import kept it
    ledger_id = ledger_id or backend.get_meta("ledger_id")
    remove_stale_import_stages(Path(tempfile.gettempdir()))  # of killed imports
    with tempfile.TemporaryDirectory(prefix=import_stage_prefix()) as work:  # 0700
        staging = SqliteBackend(Path(work) / "staged.db", write_queue=False)
        try:
            with staging.write() as txn:
                for start in range(0, len(records), 1000):
                    txn.append(records[start:start + 1000])
                if ledger_id:
                    txn.set_meta("ledger_id", ledger_id)
                for key, value in meta.items():
                    txn.set_meta(key, value)
                for item in bundle.secrets:
                    # a shredded secret stays shredded (as copy_ledger keeps it): the
                    # row says it existed (review r15: dropped, verify then reported
                    # its sealed row deleted, for good)
                    ref, created = str(item["secret"]), int(item["created_seq"])
                    txn.put_secret(ref, item.get("sealed") or b"", created)
                    if not item.get("sealed"):
                        shredded = item.get("shredded_seq")
                        txn.shred_secret(ref, int(shredded) if isinstance(shredded, int)
                                         else created)
            staged = stage_copy(staging, ledger.vault.keys, "import", backend.location,
                                str(checked.path))
            copy_ledger(staging, backend)  # one transaction of the target
        finally:
            staging.close()
    finish_copy(ledger, staged)
    return ledger.verify()
