"""Issue 13: integrity by construction. One test per finding of the issue (each failed
on the main of 2026-12-03), on real SQLite files; the PostgreSQL findings are in
tests/test_integrity_pg.py and the backend-level contract in tests/contract/."""

from __future__ import annotations

import apsw
import pytest

from ledger import SqliteConfigStore
from ledger.cli import run as run_cli
from ledger.errors import InputError, StoreError, VerificationError
from ledger.schema import MoltisConfig
from projections.snapshots import decode_state, encode_state
from tests.conftest import run


def set_port(port: int):
    def fn(cfg: MoltisConfig) -> None:
        cfg.server.port = port
    return fn


def fill(store: SqliteConfigStore, n: int, start: int = 1000) -> None:
    for i in range(n):
        run(store.update_raw(set_port(start + i), actor="t", reason=f"r{i}"))


def raw(path) -> apsw.Connection:
    return apsw.Connection(str(path))


class Result:
    def __init__(self, code: int, output: str) -> None:
        self.exit_code, self.output = code, output


def invoke(capsys, db, *args: str) -> Result:
    """The CLI in-process, through its real entry point (errors become exit codes)."""
    capsys.readouterr()
    code = run_cli(["--db", str(db), *args])
    captured = capsys.readouterr()
    return Result(code, captured.out + captured.err)


def _rechain(path, forged_seq: int) -> apsw.Connection:
    """Rewrite one event's reason and recompute every hash from there, as anyone can."""
    from ledger.core.chain import GENESIS, link

    conn = raw(path)
    conn.execute("DROP TRIGGER ledger_events_no_update")
    prev = GENESIS
    for seq, ts, actor, old, source, kind, payload in list(conn.execute(
            "SELECT seq, ts, actor, reason, source, kind, payload FROM ledger_events "
            "ORDER BY seq")):
        reason = "forged" if seq == forged_seq else old
        h = link(prev, seq, ts, actor, reason, source, kind, payload)
        conn.execute("UPDATE ledger_events SET reason = ?, prev_hash = ?, hash = ? "
                     "WHERE seq = ?", (reason, prev, h, seq))
        prev = h
    return conn


def _edit_snapshot(path, seq: int, port: int) -> None:
    """Rewrite a snapshot's state (seq and hash columns kept), as an attacker would:
    the MAC is not theirs to compute, so whatever framing there is stays as it was."""
    conn = raw(path)
    (blob,) = conn.execute("SELECT state FROM ledger_snapshots WHERE seq = ?", (seq,)).fetchone()
    blob = bytes(blob)
    start = 36 if blob.startswith(b"\xffLS1") else 0  # after the MAC framing
    state = decode_state(blob[start:])
    state = state.__class__(state.seq, state.hash, state.ts,
                            {**state.config, "server": {**state.config["server"], "port": port,
                                                         "bind": "0.0.0.0"}},
                            state.keys, state.prov_config, state.prov_keys)
    conn.execute("UPDATE ledger_snapshots SET state = ? WHERE seq = ?",
                 (blob[:start] + encode_state(state), seq))
    conn.close()


def test_finding1_an_edited_snapshot_is_neither_served_nor_verified(tmp_path, capsys):
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    store.ledger.snapshot_every = 8
    fill(store, 20)
    _edit_snapshot(db, 16, 31337)
    fresh = SqliteConfigStore(db)
    assert run(fresh.load_raw()).server.port == 1019
    assert run(fresh.load_raw()).server.bind == MoltisConfig().server.bind
    assert fresh.ledger.typed(16).server.port == 1015
    assert fresh.ledger.typed(17).server.port == 1016
    result = invoke(capsys, db, "verify")
    assert result.exit_code == 3, result.output
    assert "snapshot 16" in result.output and "rebuild-snapshots" in result.output
    assert invoke(capsys, db, "rebuild-snapshots").exit_code == 0
    assert invoke(capsys, db, "verify").exit_code == 0


def test_finding1_rollback_never_writes_an_edited_older_snapshot(tmp_path, capsys):
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    store.ledger.snapshot_every = 8
    fill(store, 20)
    _edit_snapshot(db, 8, 31337)
    fresh = SqliteConfigStore(db)
    fresh.ledger.snapshot_every = 8
    result = invoke(capsys, db, "rollback", "--to", "10", "--reason", "back")
    assert result.exit_code == 0, result.output
    cfg = run(SqliteConfigStore(db).load_raw())
    assert (cfg.server.port, cfg.server.bind) == (1009, MoltisConfig().server.bind)


def test_finding2_a_foreign_trigger_that_swallows_inserts_fails_the_write(tmp_path, capsys):
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    fill(store, 2)
    conn = raw(db)
    conn.execute("CREATE TRIGGER swallow BEFORE INSERT ON ledger_events "
                 "BEGIN SELECT RAISE(IGNORE); END")
    conn.close()
    with pytest.raises(StoreError, match="not stored"):
        fill(SqliteConfigStore(db), 1, start=5000)
    result = invoke(capsys, db, "set", "server.port", "4444", "--reason", "x")
    assert result.exit_code != 0
    assert "appended" not in result.output


def test_finding3_a_stray_row_fails_verify(tmp_path):
    db = tmp_path / "moltis.db"
    fill(SqliteConfigStore(db), 5)
    conn = raw(db)
    conn.execute("DROP TRIGGER ledger_events_no_update")
    conn.execute("UPDATE ledger_events SET seq = -7854277750134144984 WHERE seq = 5")
    conn.close()
    report = SqliteConfigStore(db, read_only=True).ledger.verify()
    assert not report.ok
    assert "-7854277750134144984" in (report.problem or "")


def test_finding6_a_running_store_notices_a_replaced_history(tmp_path, capsys):
    db, other = tmp_path / "moltis.db", tmp_path / "other.db"
    reader = SqliteConfigStore(db)
    fill(reader, 3, start=1000)
    fill(SqliteConfigStore(other), 2, start=2000)
    assert run(reader.load_raw()).server.port == 1002
    backup = tmp_path / "b.db"
    assert invoke(capsys, other, "backup", "-o", str(backup)).exit_code == 0
    assert invoke(capsys, db, "restore", "--force", str(backup)).exit_code == 0
    fill(SqliteConfigStore(db), 1, start=3000)  # same head seq (3) as before, other history
    assert run(reader.load_raw()).server.port == 3000
    fill(reader, 1, start=4000)
    assert SqliteConfigStore(db).ledger.verify().ok


def test_finding8_verify_checks_the_secrets_table(tmp_path):
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    run(store.providers.set("openai", api_key="sk-live-1"))
    run(store.providers.set("anthropic", api_key="sk-live-2"))
    assert store.ledger.verify().ok
    conn = raw(db)
    (ref,) = conn.execute("SELECT ref FROM ledger_secrets ORDER BY created_seq LIMIT 1").fetchone()
    conn.execute("UPDATE ledger_secrets SET sealed = NULL, shredded_seq = 1 WHERE ref = ?", (ref,))
    conn.close()
    report = SqliteConfigStore(db).ledger.verify()
    assert not report.ok and "shred" in (report.problem or "")
    conn = raw(db)
    conn.execute("DELETE FROM ledger_secrets WHERE ref = ?", (ref,))
    conn.close()
    report = SqliteConfigStore(db).ledger.verify()
    assert not report.ok and "no stored value" in (report.problem or "")


def test_finding9_shred_reports_success_when_the_wal_cannot_be_truncated(tmp_path):
    db = tmp_path / "moltis.db"
    # the truncating checkpoint waits for the reader below up to the busy timeout, then
    # gives up: half a second shows the same give-up as the default 5 s
    store = SqliteConfigStore(db, busy_timeout=0.5)
    run(store.providers.set("openai", api_key="sk-live-1"))
    fill(store, 1)
    holder = raw(db)
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM ledger_events").fetchall()
    try:
        refs = store.ledger.refs_with_fingerprint(
            next(ev for ev in store.ledger.events() for c in ev.changes if c.secret
                 ).changes[0].secret.fp)
        commit = store.ledger.shred(refs, reason="leaked")
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert commit.appended
    assert commit.warning and "checkpoint" in commit.warning


def test_finding10_rebuild_snapshots_survives_a_concurrent_writer(tmp_path, monkeypatch):
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    store.ledger.snapshot_every = 4
    fill(store, 10)
    before = store.ledger.backend.snapshot_seqs()
    ledger = SqliteConfigStore(db).ledger
    ledger.snapshot_every = 4
    other = SqliteConfigStore(db)
    read_rows = ledger.backend.read_rows

    def while_another_process_writes(*args, **kwargs):
        for i, row in enumerate(read_rows(*args, **kwargs)):
            if i == 1:
                fill(other, 1, start=7000)  # a real write by another connection, mid-read
            yield row

    monkeypatch.setattr(ledger.backend, "read_rows", while_another_process_writes)
    assert ledger.rebuild_snapshots() >= len(before)
    assert set(before) <= set(SqliteConfigStore(db).ledger.backend.snapshot_seqs())


@pytest.mark.parametrize("field", ["reason", "actor", "value", "key"])
def test_finding11_nul_is_refused_at_input_naming_the_field(tmp_path, field):
    store = SqliteConfigStore(tmp_path / "moltis.db")
    kw = {"actor": "alice", "reason": "why"}
    sets: dict = {("server", "bind"): "0.0.0.0"}
    if field in ("reason", "actor"):
        kw[field] = "a\x00b"
    elif field == "value":
        sets = {("server", "bind"): "0.0.\x000"}
    else:
        sets = {("env", "A\x00B"): "x"}
    with pytest.raises(InputError, match="NUL") as err:
        store.ledger.edit(sets, **kw)
    assert field in str(err.value)
    assert store.ledger.head_state().seq == 0


def test_verify_prints_the_signing_key_and_a_pin_catches_a_rechained_log(tmp_path, capsys):
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    fill(store, 4)
    fpr = store.signing_key_fingerprint()
    assert fpr and fpr.startswith("ed25519:")
    result = invoke(capsys, db, "verify")
    assert result.exit_code == 0 and f"signing key: {fpr}" in result.output
    # rewrite event 2 and re-chain everything after it (anyone can compute the hashes)
    conn = _rechain(db, 2)
    conn.execute("DELETE FROM ledger_meta WHERE key = 'head_signature'")  # and hide it
    # the head MAC (checked with the ledger key, here at hand) still tells
    assert invoke(capsys, db, "verify").exit_code == 3
    conn.execute("DELETE FROM ledger_meta WHERE key = 'head_mac'")  # hide that too
    conn.close()
    # nothing vouches for the log any more: with the ledger key at hand, verify knows
    # the signing key, so that fails too (review A #3; it was exit 0 with a note)
    unpinned = invoke(capsys, db, "verify")
    assert unpinned.exit_code == 3 and "no event of this ledger is vouched for" in unpinned.output
    pinned = invoke(capsys, db, "verify", "--expect-key", fpr)
    assert pinned.exit_code == 3 and "not signed" in pinned.output
    key_file = tmp_path / "pinned.pub"
    key_file.write_text(fpr + "\n")
    assert invoke(capsys, db, "verify", "--pinned-key-file", str(key_file)).exit_code == 3


def test_a_writer_never_signs_over_a_rewritten_log(tmp_path, capsys):
    db = tmp_path / "moltis.db"
    fill(SqliteConfigStore(db), 3)
    fpr = SqliteConfigStore(db).signing_key_fingerprint()
    conn = _rechain(db, 1)
    conn.close()
    # a writer with the key refuses to write on it: the head MAC disowns its head
    with pytest.raises(VerificationError, match="head MAC"):
        fill(SqliteConfigStore(db), 1, start=5000)
    result = invoke(capsys, db, "verify", "--expect-key", fpr)
    assert result.exit_code == 3 and "not in this log" in result.output


def test_a_key_rotation_re_signs_the_head_and_re_seals_the_snapshots(tmp_path):
    import os

    store = SqliteConfigStore(tmp_path / "moltis.db")
    store.ledger.snapshot_every = 4
    fill(store, 6)
    before = store.signing_key_fingerprint()
    commit, _ = store.ledger.rotate_key(os.urandom(32), actor="t", reason="rotate")
    report = store.ledger.verify()
    assert report.ok and not report.notes, report
    assert report.signed_seq == commit.seq and report.key_fingerprint != before
