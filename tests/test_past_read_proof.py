"""Past reads and the audit trail serve only what the head the key vouches for descends
from (review round 6, F3, F3b and its note on time refs).

A state at seq N is rebuilt from a MAC'd snapshot (or genesis) up to the stored event N;
the chain from N on must reach something proven (the next MAC'd snapshot, a hash this
process proved, or the head served) before it is served, else a prefix re-chained by a
writer without the key (the chain is unkeyed) is served as the past. Events (`log`,
`history`, blame, the web view) are served through the same forward proof, and a time
REF picks its seq from the times of proven events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from ledger.core.chain import link
from ledger.engine.vault import KeySource
from ledger.errors import VerificationError
from ledger.stores.ledger_store import SqliteConfigStore
from tests.migrated_site import cli_process, site_env


def _store(db: Path, key: bytes) -> Any:
    """The site's store in this process (its head mark beside the CLI's, in config/)."""
    config = db.parent.parent / "config"
    return SqliteConfigStore(db, keys=KeySource(key=key, key_file=config / "ledger.key",
                                                env={}))


@contextlib.contextmanager
def _opened(db: Path, env: dict[str, str]) -> Iterator[Any]:
    """`_store` with the site's key, closed after the block."""
    store = _store(db, bytes.fromhex(env["MOLTIS_LEDGER_KEY"]))
    try:
        yield store
    finally:
        asyncio.run(store.close())


def _edits(env: dict[str, str], ports: range, actor: str = "a@b") -> Path:
    """Keyed edits of server.port, a snapshot every 4 events (256 by default)."""
    db = Path(env["MOLTIS_DATA_DIR"]) / "moltis.db"

    async def writes() -> None:
        store = _store(db, bytes.fromhex(env["MOLTIS_LEDGER_KEY"]))
        store.ledger.snapshot_every = 4
        try:
            for port in ports:
                await store.edit({("server", "port"): port}, actor=actor)
        finally:
            await store.close()

    asyncio.run(writes())
    return db


def _untriggered(db: Path) -> tuple[apsw.Connection, str]:
    con = apsw.Connection(str(db))
    (sql,), = con.execute("SELECT sql FROM sqlite_master WHERE name = "
                          "'ledger_events_no_update'").fetchall()
    con.execute("DROP TRIGGER ledger_events_no_update")
    return con, sql


def _rewrite_prefix(db: Path, first: int, last: int, old: bytes, new: bytes) -> None:
    """An attacker with write access to the file and no key: the payloads of events
    first..last edited and re-chained; every later event, snapshot, the MAC row and the
    head mark left as they are."""
    con, trigger = _untriggered(db)
    rows = con.execute("SELECT seq, ts, actor, reason, source, kind, payload, prev_hash "
                       "FROM ledger_events WHERE seq BETWEEN ? AND ? ORDER BY seq",
                       (first, last)).fetchall()
    prev = rows[0][7]
    for seq, ts, actor, reason, source, kind, stored, _ in rows:
        payload = stored.replace(old, new)
        hash_ = link(prev, seq, ts, actor, reason, source, kind, payload)
        con.execute("UPDATE ledger_events SET payload = ?, prev_hash = ?, hash = ? "
                    "WHERE seq = ?", (payload, prev, hash_, seq))
        prev = hash_
    con.execute(trigger)
    con.close()


def test_a_past_read_refuses_a_rechained_prefix_the_head_does_not_descend_from(
        tmp_path: Path) -> None:
    env = site_env(tmp_path)
    db = _edits(env, range(2002, 2011))  # events 2..10, snapshots at 4 and 8
    _rewrite_prefix(db, 2, 5, b'"value":2003', b'"value":6666')
    head = cli_process(env, "get", "server.port")
    assert (head.returncode, head.stdout) == (0, "2010\n"), head  # the head is intact
    past = cli_process(env, "get", "server.port", "--at", "3")
    assert "6666" not in past.stdout and past.returncode != 0, past
    assert "event 6 does not link to event 5" in past.stderr, past.stderr
    rolled = cli_process(env, "rollback", "--to", "3", "--reason", "back to 3")
    assert rolled.returncode != 0, rolled
    now = cli_process(env, "get", "server.port")
    assert (now.returncode, now.stdout) == (0, "2010\n"), now
    # the library's past reads refuse it too (6 and 7 are rebuilt over the forged 5:
    # snapshot 4 no longer matches the log); those from snapshot 8 on are served
    with _opened(db, env) as store:
        for seq in (2, 3, 4, 5, 6, 7):
            with pytest.raises(VerificationError, match="does not link"):
                asyncio.run(store.load_raw_at(seq))
        assert asyncio.run(store.load_raw_at(8)).server.port == 2008
        assert asyncio.run(store.load_raw_at(9)).server.port == 2009


def test_past_reads_of_an_intact_ledger_equal_the_full_replay(tmp_path: Path) -> None:
    """Every seq, in an order that reuses and skips what was proven before."""
    env = site_env(tmp_path)
    db = _edits(env, range(2002, 2016))
    with _opened(db, env) as store:
        ledger = store.ledger
        head = ledger.head_state().seq
        for seq in (*range(head, -1, -1), *range(head + 1), 3, 14, 1, 7):
            assert ledger.state_at(seq) == ledger.replay(until=seq), seq


def _set_column(db: Path, seq: int, column: str, value: object) -> None:
    con, trigger = _untriggered(db)
    con.execute(f"UPDATE ledger_events SET {column} = ? WHERE seq = ?", (value, seq))
    con.execute(trigger)
    con.close()


def test_log_refuses_an_event_edited_in_place_below_the_snapshot_the_head_loads_from(
        tmp_path: Path) -> None:
    env = site_env(tmp_path)
    db = _edits(env, range(2002, 2007), actor="alice@corp")  # events 2..6, snapshot at 4
    _set_column(db, 2, "actor", "mallory@evil")
    shown = cli_process(env, "--json", "log")
    actors = ([e.get("actor") for e in json.loads(shown.stdout)["events"]]
              if shown.returncode == 0 else [])
    assert "mallory@evil" not in actors, (shown.returncode, actors)
    assert shown.returncode != 0, shown
    assert "event 2 was changed" in json.loads(shown.stdout)["error"], shown.stdout
    limited = cli_process(env, "--json", "log", "--limit", "2")  # above the edit: served
    assert limited.returncode == 0, limited
    assert [e["seq"] for e in json.loads(limited.stdout)["events"]] == [6, 5]
    with _opened(db, env) as store:
        ledger = store.ledger
        with pytest.raises(VerificationError, match="event 2 was changed"):
            ledger.event(2)
        with pytest.raises(VerificationError, match="event 2 was changed"):
            list(ledger.events())
        with pytest.raises(VerificationError, match="event 2 was changed"):
            list(ledger.events(descending=True))
        assert [e.seq for e in ledger.events(after=3)] == [4, 5, 6]
        assert ledger.event(3) is not None and ledger.event(3).actor == "alice@corp"


def test_events_of_an_intact_ledger_are_served_in_every_order(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    db = _edits(env, range(2002, 2013))
    with _opened(db, env) as store:
        ledger = store.ledger
        every = [r.seq for r in ledger.backend.read()]
        assert [e.seq for e in ledger.events()] == every
        assert [e.seq for e in ledger.events(descending=True)] == every[::-1]
        assert [e.seq for e in ledger.events(after=2, until=9, descending=True,
                                             limit=3)] == [9, 8, 7]
        assert [e.seq for e in ledger.events(after=5, limit=2)] == [6, 7]
        assert all(ledger.event(s).seq == s for s in every)  # type: ignore[union-attr]
        assert ledger.event(len(every) + 1) is None


def test_a_time_ref_is_picked_from_the_times_of_proven_events(tmp_path: Path) -> None:
    """A `ts` edited in place below the last MAC'd snapshot steers the binary search
    over times read unproven: the seq picked is checked against its neighbours' proven
    times, and a time the chain does not hold is refused."""
    env = site_env(tmp_path)
    db = _edits(env, range(2002, 2011))
    con = apsw.Connection(str(db))
    times = dict(con.execute("SELECT seq, ts FROM ledger_events").fetchall())
    con.close()
    moment = times[3] + (times[4] - times[3]) // 2 if times[4] > times[3] else times[3]
    with _opened(db, env) as store:
        assert store.ledger.seq_at_time(moment) == 3
    # event 5 claims event 1's time: the search (5, then 8, 6) settles on 5, a state
    # after `moment`, unless the times it settles by are proven
    _set_column(db, 5, "ts", times[1])
    with _opened(db, env) as store, pytest.raises(VerificationError, match="was changed"):
        store.ledger.seq_at_time(moment)
