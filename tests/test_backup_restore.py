"""Backup and restore (issue 15's items done with issue 13): a backup is one
self-contained private file, in <data dir>/backups/ by default; a restore rebuilds the
ledger from the backup's rows (never its file's schema objects), keeps the replaced
ledger, and both say where the ledger key is. Bundle import checks what it imports."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import apsw
import pytest

from ledger import SqliteConfigStore
from ledger.cli import run as run_cli
from ledger.errors import LedgerError, ParseError, VerificationError
from ledger.ops.bundle import import_bundle
from ledger.schema import MoltisConfig
from tests.conftest import run


def fill(store: SqliteConfigStore, n: int, start: int = 1000) -> None:
    for i in range(n):
        run(store.update_raw(lambda c, p=start + i: setattr(c.server, "port", p),
                             actor="t", reason=f"r{i}"))


def cli(capsys, db: Path, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = run_cli(["--db", str(db), *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_backup_defaults_to_the_data_dir_and_is_one_private_file(tmp_path, capsys):
    db = tmp_path / "moltis.db"
    fill(SqliteConfigStore(db), 3)
    code, out = cli(capsys, db, "backup")
    assert code == 0, out
    backups = list((tmp_path / "data" / "backups").iterdir())
    assert len(backups) == 1 and backups[0].name.startswith("ledger-")
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert "$MOLTIS_LEDGER_KEY" in out and "restor" in out
    assert sorted(p.name for p in backups[0].parent.iterdir()) == [backups[0].name]
    # still one file after being read (it is not in WAL mode)
    assert SqliteConfigStore(backups[0], read_only=True).ledger.verify().ok
    assert sorted(p.name for p in backups[0].parent.iterdir()) == [backups[0].name]


def test_backup_never_writes_through_a_symlink(tmp_path, capsys):
    db = tmp_path / "moltis.db"
    fill(SqliteConfigStore(db), 1)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "out" / "copy.db"
    link.parent.mkdir(mode=0o700)
    link.symlink_to(victim)
    code, out = cli(capsys, db, "backup", "-o", str(link))
    assert code == 1 and "exists" in out
    assert victim.read_text() == "precious"


def test_restore_rebuilds_from_rows_and_keeps_the_replaced_ledger(tmp_path, capsys):
    db, other = tmp_path / "moltis.db", tmp_path / "other.db"
    fill(SqliteConfigStore(db), 3)
    fill(SqliteConfigStore(other), 2, start=2000)
    saved = tmp_path / "saved.db"
    assert cli(capsys, other, "backup", "-o", str(saved))[0] == 0
    # the backup carries a foreign trigger that would swallow every later write
    conn = apsw.Connection(str(saved))
    conn.execute("CREATE TRIGGER swallow BEFORE INSERT ON ledger_events "
                 "BEGIN SELECT RAISE(IGNORE); END")
    conn.close()
    code, out = cli(capsys, db, "restore", "--force", str(saved))
    assert code == 0, out
    assert "kept the replaced ledger in" in out and "$MOLTIS_LEDGER_KEY" in out
    kept = next((tmp_path / "data" / "backups").glob("replaced-*.db"))
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert run(SqliteConfigStore(kept, read_only=True).load_raw()).server.port == 1002
    code, out = cli(capsys, db, "set", "server.port", "4444", "--reason", "after")
    assert code == 0, out
    store = SqliteConfigStore(db)
    # the backup's 2 events, the restore's own (this copy's history starts there), the set
    assert run(store.load_raw()).server.port == 4444 and store.ledger.head_state().seq == 4
    restored = store.ledger.event(3)
    assert restored is not None and restored.source == "restore" and not restored.changes
    assert store.ledger.verify().ok
    names = {r[0] for r in apsw.Connection(str(db)).execute(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger'")}
    assert "swallow" not in names


def _bundle(tmp_path: Path) -> tuple[Path, list[str]]:
    from ledger.ops.bundle import write_bundle

    store = SqliteConfigStore(tmp_path / "src.db")
    fill(store, 3)
    run(store.providers.set("openai", api_key="sk-live-1"))
    path = tmp_path / "b.bundle"
    with path.open("w", encoding="utf-8") as f:
        write_bundle(store.ledger, f, with_secrets=True)
    return path, path.read_text().splitlines()


def _rechained(lines: list[str], k: int, **changes: object) -> list[str]:
    from ledger.core.chain import GENESIS, link

    out, prev = [lines[0]], GENESIS
    for line in lines[1:]:
        item = json.loads(line)
        if "seq" in item:
            if item["seq"] == k:
                item.update(changes)
            h = link(prev, item["seq"], item["ts"], item["actor"], item["reason"],
                     item["source"], item["kind"], item["payload"].encode())
            item.update(prev_hash=prev.hex(), hash=h.hex())
            prev = h
        out.append(json.dumps(item))
    out[0] = json.dumps({**json.loads(lines[0]), "head": prev.hex()})
    return out


@pytest.mark.parametrize("variant", ["format_version", "key_check", "undecodable",
                                     "far-future", "base64"])
def test_finding7_bundle_meta_and_lines_are_checked_on_import(tmp_path, variant):
    path, lines = _bundle(tmp_path)
    if variant == "format_version":
        lines.append(json.dumps({"meta": {"format_version": "99"}}))
    elif variant == "key_check":
        lines = [line for line in lines if '"key_check"' not in line]
        lines.append(json.dumps({"meta": {"key_check": "ab" * 32}}))
    elif variant == "undecodable":
        lines = _rechained(lines, 2, payload='{"changes": 7}')
    elif variant == "far-future":
        lines = _rechained(lines, 3, ts=2**63 - 1)
    else:
        i = next(i for i, line in enumerate(lines) if line.startswith('{"secret"'))
        item = json.loads(lines[i])
        item["sealed"] = "not base64!"
        lines[i] = json.dumps(item)
    path.write_text("\n".join(lines) + "\n")
    target = SqliteConfigStore(tmp_path / "target.db")
    with pytest.raises((ParseError, VerificationError)) as err:
        import_bundle(path, target.ledger)
    assert "nothing was imported" in str(err.value) or "base64" in str(err.value)
    assert target.ledger.backend.head().seq == 0
    assert target.ledger.backend.get_meta("format_version") == "1"
    # the ledger still works: secrets can be written
    run(target.providers.set("openai", api_key="sk-live-2"))


def test_an_imported_bundle_is_signed_and_verifies(tmp_path):
    path, _ = _bundle(tmp_path)
    target = SqliteConfigStore(tmp_path / "target.db")
    report = import_bundle(path, target.ledger)
    # the bundle's 4 events and the import's own, signed
    assert report.ok and report.events == 5 and report.signed_seq == 5 and not report.notes
    assert isinstance(run(target.load_raw()), MoltisConfig)


def test_a_copy_refuses_an_event_no_backend_stores_and_writes_nothing(tmp_path):
    from ledger.backends.memory import MemoryBackend
    from ledger.backends.sqlite import SqliteBackend
    from ledger.core.chain import link
    from ledger.core.events import Record
    from ledger.ops.transfer import copy_ledger

    db = tmp_path / "moltis.db"
    fill(SqliteConfigStore(db), 3)
    backend = SqliteBackend(db)
    with backend.write() as txn:
        head = txn.head()
        payload = b'{"changes":[{"op":"set","path":["server","port"],"value":1}]}'
        h = link(head.hash, 4, head.ts, "t\x00", "", "api", "change", payload)
        txn.append([Record(4, head.ts, "t\x00", "", "api", "change", payload, head.hash, h)])
    target = MemoryBackend()
    with pytest.raises(LedgerError, match="NUL"):
        copy_ledger(backend, target)
    assert target.head().seq == 0 and not target.meta_items().get("ledger_id")
    assert os.path.exists(db)
