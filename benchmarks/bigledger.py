"""A large ledger built quickly and cached in the work folder, keyed by its size.

Event 1 imports the docs example through the real store. Every later event is a
single-key change exactly as `update_raw` writes it (same payload encoding, actor,
source and kind, linked with `ledger.core.chain.link`), inserted through the SQLite backend's
own write transaction in batches, with a snapshot every `SNAPSHOT_EVERY` events encoded
by `projections.snapshots.encode_state` and sealed with their MAC as the engine writes
them. Timestamps are one
second apart and end near now.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.workspace import (
    ACTOR,
    DOCS_EXAMPLE,
    fixture_doc,
    remove_db,
    sqlite_store,
    work_dir,
)

BUILDER_VERSION = 3  # 3: snapshots sealed with their MAC, head signed
BATCH = 50_000
# The keys that the synthetic single-key updates cycle through (paths in the docs example).
KEYS = (("tools", "agent_timeout_secs"), ("tools", "agent_max_iterations"),
        ("server", "port"), ("identity", "name"))


def value_for(seq: int) -> object:
    """Valid values for every key (a port stays a port), different from event to event."""
    path = KEYS[seq % len(KEYS)]
    return f"Atlas-{seq % 1000}" if path[0] == "identity" else 1024 + seq % 60_000


def _stamp_info(events: int) -> dict[str, object]:
    from ledger.backends.base import FORMAT_VERSION
    from projections.snapshots import SNAPSHOT_EVERY

    # the key's own hash: a ledger cached under another key (the benchmark key changed)
    # cannot be read, so it is built again
    key = hashlib.blake2b(os.environ.get("MOLTIS_LEDGER_KEY", "").encode()).hexdigest()[:16]
    return {"events": events, "builder": BUILDER_VERSION, "format": FORMAT_VERSION,
            "snapshot_every": SNAPSHOT_EVERY, "key": key}


def big_ledger(events: int) -> Path:
    """The path of a ledger with `events` events (built on first use)."""
    path = work_dir() / f"ledger-{events}.db"
    stamp = path.with_suffix(".json")
    want = _stamp_info(events)
    if path.exists() and stamp.exists() and json.loads(stamp.read_text()) == want:
        return path
    stamp.unlink(missing_ok=True)
    started = time.perf_counter()
    print(f"  building a {events:,}-event ledger in {path.name} (cached for later runs)",
          file=sys.stderr, flush=True)
    _build(remove_db(path), events)
    flush_to_disk(path)
    stamp.write_text(json.dumps(want))
    print(f"  built in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return path


def _build(path: Path, events: int) -> None:
    from ledger.core.chain import link
    from ledger.core.events import KIND_CHANGE, Change, ChangePayload, Record, encode_payload
    from projections.config_view import replay
    from projections.snapshots import SNAPSHOT_EVERY, decode_state, encode_state, seal_snapshot

    store = sqlite_store(path, fixture_doc(DOCS_EXAMPLE))
    backend = store.ledger.backend
    keys = store.ledger.vault.integrity()
    assert keys is not None, "the benchmark environment sets MOLTIS_LEDGER_KEY"
    head = backend.head()
    assert head.seq == 1
    state = decode_state(encode_state(store.ledger.head_state()))  # a private copy
    prev, seq = head.hash, head.seq
    ts = time.time_ns() // 1000 - events * 1_000_000
    while seq < events:
        end = min(events, seq + BATCH)
        batch: list[Record] = []
        pending: list[Record] = []  # events since the last snapshot
        snapshots: list[tuple[int, bytes, bytes]] = []
        for n in range(seq + 1, end + 1):
            ts += 1_000_000
            change = Change(op="set", path=KEYS[n % len(KEYS)], value=value_for(n))
            payload = encode_payload(ChangePayload(changes=[change]))
            h = link(prev, n, ts, ACTOR, "", "api", KIND_CHANGE, payload)
            rec = Record(n, ts, ACTOR, "", "api", KIND_CHANGE, payload, prev, h)
            batch.append(rec)
            pending.append(rec)
            prev = h
            if n % SNAPSHOT_EVERY == 0:
                state = replay(state, pending, private=True)
                pending = []
                snapshots.append((n, h, seal_snapshot(keys.snapshot_mac, n, h,
                                                      encode_state(state))))
        if pending:
            state = replay(state, pending, private=True)
        with backend.write() as txn:
            txn.append(batch)
            for snap in snapshots:
                txn.put_snapshot(*snap)
        seq = end
    store.ledger.reset_caches()
    store.ledger.sign_head(adopt=True)  # as an append would have
    backend.checkpoint()
    store.ledger.typed()  # the head is a valid config
    store.ledger.close()


def copy_of(events: int, dest: Path) -> Path:
    """A private copy of the large ledger (for figures that write to it)."""
    import shutil

    import apsw

    src = big_ledger(events)
    conn = apsw.Connection(str(src))
    try:  # fold any WAL content into the file, so copying the file copies everything
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    finally:
        conn.close()
    shutil.copyfile(src, remove_db(dest))
    flush_to_disk(dest)
    return dest


def flush_to_disk(path: Path) -> None:
    """fsync a freshly written file, so the disk is not still writing back hundreds of
    MB while the next figure times its own fsyncs."""
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
