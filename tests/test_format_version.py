"""The stored format version: a ledger says 1 until its first event with secrets inside
a list (`Change.sealed`), which raises it to 2 in the same transaction, on every backend
and every path that writes events (the engine's append, group commit, PostgreSQL's
optimistic one-statement append, and every copy: backup, restore, import-bundle,
switch-backend, copy_ledger, migrate, a key rotation's re-sealed backups). A release
that understands only format 1 refuses such a ledger (shown with the real older code in
tests/test_format_older_release.py); `verify` notes and `check` warns when a ledger
holding such events says 1, and `rebuild-snapshots` raises it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from ledger import SqliteConfigStore
from ledger.backends.base import (
    CREATED_FORMAT,
    FORMAT_SEALED_LISTS,
    FORMAT_VERSION,
    Backend,
    format_needed,
)
from ledger.core.chain import link
from ledger.core.events import (
    KIND_CHANGE,
    Change,
    ChangePayload,
    Record,
    encode_payload,
    now_us,
)
from ledger.core.secret_refs import SecretRef
from ledger.engine.ledger import Ledger
from ledger.ops.backup import backup, restore
from ledger.ops.bundle import import_bundle, write_bundle
from ledger.ops.transfer import copy_ledger
from tests.conftest import PG_URL_VAR, _pg_url, run
from tests.operator import invoke, make_site

SECRET = "sk-FORMAT-list-secret-0001"
ARGS = ["--api-key", SECRET]
ARGS_PATH = ("mcp", "servers", "gh", "args")


def version(backend: Backend) -> str | None:
    return backend.get_meta("format_version")


def seal_a_list(store: Any) -> None:
    run(store.edit({("mcp", "servers", "gh", "command"): "gh-mcp", ARGS_PATH: ARGS},
                   reason="an MCP server with its key in args"))


def plain_edit(store: Any, port: int = 8111) -> None:
    run(store.edit({("server", "port"): port}, reason="plain"))


def say_format_1(db: Path) -> None:
    """What a copy by an older tool (or an edit of the meta) leaves: format 1 claimed."""
    conn = apsw.Connection(str(db))
    conn.execute("UPDATE ledger_meta SET value = '1' WHERE key = 'format_version'")
    conn.close()


# -- the engine's append, per backend ----------------------------------------------


def test_a_new_ledger_says_1_until_its_first_sealed_list_then_2(ledger_factory) -> None:
    store = ledger_factory()
    backend = store.ledger.backend
    assert version(backend) == "1" and CREATED_FORMAT == 1 and FORMAT_VERSION == 2
    plain_edit(store)
    run(store.providers.set("openai", api_key="sk-a-plain-secret-leaf-0002"))
    assert version(backend) == "1"  # a secret leaf was always format 1
    seal_a_list(store)
    assert version(backend) == "2"
    # never lowered: the list loses its secret, plain writes follow
    run(store.edit({ARGS_PATH: ["--verbose"]}, reason="no key in args"))
    plain_edit(store, 8112)
    assert version(backend) == "2"
    # read back as usual by this release
    assert run(store.load_effective(env={})).mcp.servers["gh"].args == ["--verbose"]
    assert store.ledger.verify().ok


def test_an_event_whose_list_table_has_a_sealed_key_is_not_format_2() -> None:
    """The byte test is only a fast path: a plain table inside a list may have a key
    named `sealed`; only the change's own flag needs format 2."""
    plain = encode_payload(ChangePayload([Change(op="set", path=("x",),
                                                 value=[{"sealed": True}])]))
    assert b'"sealed":true' in plain
    rec = _record(0, b"\0" * 32, plain)
    assert format_needed([rec]) == CREATED_FORMAT
    assert format_needed([_record(0, b"\0" * 32, _sealed_payload())]) == FORMAT_SEALED_LISTS


# -- the backends' transactions: atomic with the event ----------------------------------


def _sealed_payload() -> bytes:
    return encode_payload(ChangePayload([Change(
        op="set", path=ARGS_PATH, value=["--api-key", SecretRef(ref="r1", fp="00" * 8)])]))


def _plain_payload(port: int) -> bytes:
    return encode_payload(ChangePayload([Change(op="set", path=("server", "port"),
                                                value=port)]))


def _record(seq: int, prev: bytes, payload: bytes) -> Record:
    ts = now_us()
    h = link(prev, seq + 1, ts, "t", "r", "api", KIND_CHANGE, payload)
    return Record(seq + 1, ts, "t", "r", "api", KIND_CHANGE, payload, prev, h)


def _next(backend: Backend, payload: bytes) -> Record:
    head = backend.head()
    return _record(head.seq, head.hash, payload)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres",
                                                         marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend
    if request.param == "memory":
        from ledger.backends.memory import MemoryBackend

        made = MemoryBackend()
    elif request.param == "sqlite":
        from ledger.backends.sqlite import SqliteBackend

        made = SqliteBackend(tmp_path / "b.db")
    else:
        from ledger.backends.postgres import PostgresBackend
        from tests.pg import new_schema_name, register_schema

        url = _pg_url()
        if not url:
            pytest.skip(f"set {PG_URL_VAR}=postgresql://... to run the PostgreSQL tests")
        schema = new_schema_name()
        register_schema(url, schema)
        made = PostgresBackend(url, schema=schema)
    yield made
    made.close()


class Boom(Exception):
    pass


def _append_then_fail(backend: Backend) -> None:
    with backend.write() as txn:
        txn.append([_next(backend, _sealed_payload())])
        raise Boom


def _append_then_fail_in(savepoint: Any, txn: Any, backend: Backend) -> None:
    with savepoint():
        txn.append([_record(1, backend.head().hash, _sealed_payload())])
        raise Boom


def test_the_version_rises_only_with_its_event(backend: Backend) -> None:
    with backend.write() as txn:
        txn.append([_next(backend, _plain_payload(1))])
    assert version(backend) == "1"
    # rolled back: neither the event nor the version
    with pytest.raises(Boom):
        _append_then_fail(backend)
    assert backend.head().seq == 1 and version(backend) == "1"
    # one event of a group commit undone (its savepoint), the next one kept
    with backend.write() as txn:
        savepoint = txn.savepoint  # type: ignore[attr-defined]
        with pytest.raises(Boom):
            _append_then_fail_in(savepoint, txn, backend)
        with savepoint():
            txn.append([_next(backend, _plain_payload(2))])
    assert backend.head().seq == 2 and version(backend) == "1"
    # committed: both
    with backend.write() as txn:
        txn.append([_next(backend, _sealed_payload())])
    assert backend.head().seq == 3 and version(backend) == "2"
    with backend.write() as txn:
        txn.append([_next(backend, _plain_payload(3))])
    assert version(backend) == "2"


def test_the_optimistic_append_raises_it_too(backend: Backend) -> None:
    """`write(wait=False)` after the head is known: PostgreSQL's one-statement append
    (the sealed event takes the lock to read and raise the version)."""
    with backend.write() as txn:
        txn.append([_next(backend, _plain_payload(1))])
    with backend.write(wait=False) as txn:
        assert backend.name != "postgres" or txn.optimistic  # type: ignore[attr-defined]
        txn.append([_next(backend, _plain_payload(2))])
    assert version(backend) == "1"
    with backend.write(wait=False) as txn:
        txn.append([_next(backend, _sealed_payload())])
    assert backend.head().seq == 3 and version(backend) == "2"


def test_group_commit_raises_it_with_the_group(ledger_factory) -> None:
    """Concurrent writers of one process: whichever group holds the sealed list commits
    the raised version with it."""
    store = ledger_factory()
    ledger: Ledger = store.ledger
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            if i == 3:
                seal_a_list(store)
            else:
                plain_edit(store, 9000 + i)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert ledger.backend.head().seq == 6 and version(ledger.backend) == "2"


# -- every copy ends with the version its events need --------------------------------------


@pytest.fixture
def sealed_db(tmp_path: Path) -> Path:
    """A SQLite ledger holding a sealed list element that says format 1 (copied by an
    older build): each copy below must still end at 2."""
    db = tmp_path / "sealed.db"
    store = SqliteConfigStore(db)
    plain_edit(store)
    seal_a_list(store)
    plain_edit(store, 8200)
    assert version(store.ledger.backend) == "2"
    store.ledger.close()
    say_format_1(db)
    return db


def test_copy_ledger_raises_it_in_the_target(sealed_db: Path, tmp_path: Path) -> None:
    from ledger.backends.sqlite import SqliteBackend

    source, target = SqliteBackend(sealed_db), SqliteBackend(tmp_path / "copy.db")
    assert version(source) == "1"
    copy_ledger(source, target)
    assert version(target) == "2"
    source.close()
    target.close()


@pytest.mark.postgres
def test_switch_to_postgres_and_back_keeps_it(sealed_db: Path, tmp_path: Path,
                                             pg_url: str) -> None:
    from ledger.backends.postgres import PostgresBackend
    from ledger.backends.sqlite import SqliteBackend
    from tests.pg import new_schema_name, register_schema

    schema = new_schema_name()
    register_schema(pg_url, schema)
    source, pg = SqliteBackend(sealed_db), PostgresBackend(pg_url, schema=schema)
    copy_ledger(source, pg)  # a batch: one head move and one executemany
    assert version(pg) == "2"
    back = SqliteBackend(tmp_path / "back.db")
    copy_ledger(pg, back)
    assert version(back) == "2"
    for b in (source, pg, back):
        b.close()


@pytest.mark.postgres
def test_a_batch_copy_to_postgres_raises_it(pg_url: str) -> None:
    """More events than PostgreSQL queues one by one (`_QUEUED_EVENTS`): the copy's
    batch path (one head move, one executemany) commits the version with them."""
    from ledger.backends.memory import MemoryBackend
    from ledger.backends.postgres import _QUEUED_EVENTS, PostgresBackend
    from tests.pg import new_schema_name, register_schema

    source = MemoryBackend()
    head = source.head()
    records = []
    for i in range(_QUEUED_EVENTS + 10):
        rec = _record(head.seq, head.hash,
                      _sealed_payload() if i == _QUEUED_EVENTS else _plain_payload(i + 1))
        records.append(rec)
        head = type(head)(rec.seq, rec.hash, rec.ts)
    with source.write() as txn:
        txn.append(records)
    schema = new_schema_name()
    register_schema(pg_url, schema)
    target = PostgresBackend(pg_url, schema=schema)
    copy_ledger(source, target)
    assert target.head().seq == len(records) and version(target) == "2"
    target.close()


def test_backup_and_restore_raise_it(sealed_db: Path, tmp_path: Path) -> None:
    store = SqliteConfigStore(sealed_db)
    saved = tmp_path / "saved.db"
    assert backup(store.ledger, saved).ok
    copy = SqliteConfigStore(saved, read_only=True)
    assert version(copy.ledger.backend) == "2"
    copy.ledger.close()
    # restore the (format 1) ledger's own file into another ledger
    other = SqliteConfigStore(tmp_path / "other.db")
    restore(other.ledger, sealed_db, force=True)
    assert version(other.ledger.backend) == "2"
    assert run(other.load_effective(env={})).mcp.servers["gh"].args == ARGS
    other.ledger.close()
    store.ledger.close()


def test_import_bundle_raises_it(sealed_db: Path, tmp_path: Path) -> None:
    store = SqliteConfigStore(sealed_db)
    bundle = tmp_path / "all.jsonl"
    with bundle.open("w", encoding="utf-8") as out:
        write_bundle(store.ledger, out, with_secrets=True)
    store.ledger.close()
    target = SqliteConfigStore(tmp_path / "imported.db")
    assert version(target.ledger.backend) == "1"
    assert import_bundle(bundle, target.ledger).ok
    assert version(target.ledger.backend) == "2"
    target.ledger.close()


def test_migrate_and_switch_backend_raise_it(tmp_path: Path) -> None:
    site = make_site(tmp_path, keys=False)
    site.toml.write_text(site.toml.read_text(encoding="utf-8") + (
        '\n[mcp.servers.gh]\ncommand = "gh-mcp"\n'
        f'args = ["--api-key", "{SECRET}"]\n'), encoding="utf-8")
    site.toml.chmod(0o600)
    result = invoke(["switch-backend", "sqlite"])
    assert result.code == 0, result
    store = SqliteConfigStore(site.db, read_only=True)
    assert version(store.ledger.backend) == "2"
    assert SECRET.encode() not in site.db.read_bytes()
    store.ledger.close()


def test_a_key_rotation_raises_it_in_the_backups_it_reseals(sealed_db: Path, tmp_path: Path,
                                                             key_file: Path) -> None:
    """A backup copied by an older build says 1: the rotation re-seals it and raises
    its version from its own log."""
    import secrets as random_secrets
    import shutil

    key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file.write_text(random_secrets.token_hex(32))
    key_file.chmod(0o600)
    db = tmp_path / "data" / "moltis.db"
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = SqliteConfigStore(db)
    seal_a_list(store)
    backups = tmp_path / "data" / "backups"
    backups.mkdir(mode=0o700)
    kept = backups / "ledger-older-build.db"
    store.ledger.close()
    shutil.copyfile(db, kept)
    kept.chmod(0o600)
    say_format_1(kept)
    result = invoke(["--db", str(db), "key", "rotate"])
    assert result.code == 0, result
    probe = SqliteConfigStore(kept, read_only=True)
    assert version(probe.ledger.backend) == "2"
    probe.ledger.close()


# -- verify, check and the repair ------------------------------------------------------------


def test_verify_notes_check_warns_and_rebuild_snapshots_repairs(sealed_db: Path) -> None:
    db = str(sealed_db)
    result = invoke(["--db", db, "--json", "verify"])
    assert result.code == 0, result  # a note: the log itself is intact
    notes = [n for n in result.json()["notes"] if "format" in n]
    assert len(notes) == 1 and "event 2 holds secrets inside a list" in notes[0]
    assert "says format 1" in notes[0] and "rebuild-snapshots" in notes[0]
    assert SECRET not in result.out + result.err
    checked = invoke(["--db", db, "--json", "check"])
    assert any("holds secrets inside a list" in w for w in checked.json()["warnings"])
    # this release reads it as usual
    store = SqliteConfigStore(sealed_db, read_only=True)
    assert run(store.load_effective(env={})).mcp.servers["gh"].args == ARGS
    store.ledger.close()
    # the repair raises it from the whole log; then neither says anything
    assert invoke(["--db", db, "rebuild-snapshots"]).code == 0
    assert version_of(sealed_db) == "2"
    again = invoke(["--db", db, "--json", "verify"])
    assert again.code == 0 and not [n for n in again.json()["notes"] if "format" in n]
    assert not [w for w in invoke(["--db", db, "--json", "check"]).json()["warnings"]
                if "format" in w]


def test_a_ledger_without_sealed_lists_gets_no_note(tmp_path: Path) -> None:
    db = tmp_path / "plain.db"
    store = SqliteConfigStore(db)
    plain_edit(store)
    store.ledger.close()
    result = invoke(["--db", str(db), "--json", "verify"])
    assert result.code == 0 and not [n for n in result.json()["notes"] if "format" in n]
    assert invoke(["--db", str(db), "rebuild-snapshots"]).code == 0
    assert version_of(db) == "1"


def version_of(db: Path) -> str | None:
    from ledger.backends.sqlite import SqliteBackend

    backend = SqliteBackend(db, read_only=True)
    try:
        return version(backend)
    finally:
        backend.close()


# -- the head mirror: the other file a gateway reads --------------------------------------


def test_the_head_mirror_says_v2_once_it_holds_a_sealed_list_and_is_still_served(
        tmp_path: Path) -> None:
    import json

    from ledger.engine.sealed_files import open_body
    from ledger.engine.vault import KeySource
    from ledger.ops.mirror import MIRROR_NAME, read_mirror, slot_paths
    from ledger.ops.open_store import mirror_key, open_store

    config = tmp_path / "config"
    config.mkdir()
    (config / "moltis.toml").write_text('[server]\nport = 8111\n\n[config]\nbackend = "sqlite"\n',
                                        encoding="utf-8")
    (config / "moltis.toml").chmod(0o600)
    store = open_store()
    location = store.ledger.backend.location
    keys = KeySource()
    key = keys.load(create=False)
    assert key is not None
    path = tmp_path / "data" / MIRROR_NAME

    def formats() -> set[str]:
        return {json.loads(open_body(p.read_bytes(), key))["format"]
                for p in slot_paths(path) if p.exists()}

    assert formats() == {"moltis-config-ledger head mirror v1"}
    seal_a_list(store)
    newest = slot_paths(path)[store.ledger.head_state().seq % 2]  # slots alternate by seq
    assert json.loads(open_body(newest.read_bytes(), key))["format"] == \
        "moltis-config-ledger head mirror v2"
    assert SECRET.encode() not in newest.read_bytes()
    store.ledger.close()
    mirror = read_mirror(path, mirror_key(location), keys, "a test")
    assert mirror is not None
    assert run(mirror.load_effective(env={})).mcp.servers["gh"].args == ARGS
