"""Subprocess entry points: `python -m benchmarks.worker COMMAND ...`, one JSON line out.

- `open-head PATH`: in a fresh process, open a `SqliteConfigStore` and read the head
  (`load_raw`); reports the time of that (imports done first, and timed apart) and the
  process's peak RSS (see `peak_rss_kb`).
- `writer KIND TARGET N READY GO [SCHEMA]`: open a store (`sqlite` file or `postgres`
  DSN), warm it (a read, then one untimed increment: the process's first write, reported
  as `first`), create the READY file, wait for the GO file, then do N read-modify-write
  increments of one int key through `update_raw`; reports its start and end wall times
  and each timed increment's duration.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

ACTOR = "bench"


def _increment(cfg: Any) -> None:
    cfg.tools.agent_timeout_secs += 1


def open_head(path: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    import ledger.engine.ledger
    import ledger.stores.ledger_store
    import ledger.typed.head_cache
    import projections.snapshots  # noqa: F401

    loop = asyncio.new_event_loop()
    t1 = time.perf_counter()
    store = ledger.SqliteConfigStore(path)
    cfg = loop.run_until_complete(store.load_raw())
    t2 = time.perf_counter()
    assert cfg.tools is not None
    return {"seconds": t2 - t1, "imports": t1 - t0, "peak_rss_kb": peak_rss_kb(),
            "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "seq": store.ledger.head_state().seq}


def peak_rss_kb() -> int:
    """This process's peak RSS. `ru_maxrss` is the first choice, but on Linux it keeps the
    high-water mark of the address space the process was forked from (the parent's, when
    spawned by a large parent) across exec; VmHWM in /proc/self/status is the peak of
    this process's own address space, so it is used where it exists."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class SqliteBackoff:
    """SQLite's own busy handler (sqliteDefaultBusyCallback: sleeps of 1, 2, 5, 10, 15,
    20, 25, 25, 25, 50, 50 and then 100 ms), as the baseline the ledger's polling wait
    replaced (issue 16); installed in the ledger's place by the `sqlite-backoff` kind."""

    DELAYS_MS = (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100)

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    def __call__(self, prior_calls: int) -> bool:
        delays = self.DELAYS_MS
        done = (sum(delays) + (prior_calls - len(delays)) * 100 if prior_calls >= len(delays)
                else sum(delays[:prior_calls]))
        if done / 1000 >= self.timeout_s:
            return False
        time.sleep(delays[min(prior_calls, len(delays) - 1)] / 1000)
        return True


def open_store(kind: str, target: str, schema: str | None) -> Any:
    if kind in ("sqlite", "sqlite-backoff", "sqlite-poll"):
        from ledger import SqliteConfigStore

        # sqlite-poll: the ledger's polling wait alone, without the queue of writer
        # processes (the wait before the queue); sqlite-backoff: SQLite's own busy
        # handler, without the queue (the wait before that)
        store = SqliteConfigStore(target, busy_timeout=120)
        backend = store.ledger.backend
        if kind != "sqlite":
            queue, backend._queue = backend._queue, None  # type: ignore[attr-defined]
            if queue is not None:
                queue.close()
        if kind == "sqlite-backoff":
            backend._fair_wait = SqliteBackoff(120)  # type: ignore[attr-defined]
            backend._conn.set_busy_handler(backend._fair_wait)  # type: ignore[attr-defined]
        return store
    if kind == "postgres":
        from ledger.stores.postgres_store import PostgresConfigStore

        return PostgresConfigStore(target, schema=schema or "public", busy_timeout=120)
    raise SystemExit(f"unknown store kind {kind}")


async def _writes(store: Any, n: int, ready: Path, go: Path) -> dict[str, Any]:
    await store.load_raw()
    # One untimed update before the start signal: a process's first write imports and
    # builds what writing needs (tens of ms, outside the lock, once per process), which
    # an operator's gateway pays once at start; the figures are about writers competing,
    # so it is reported on its own ("first") and counted in the increments made.
    t0 = time.perf_counter()
    await store.update_raw(_increment, actor=ACTOR, reason="bench warm-up")
    first = time.perf_counter() - t0
    ready.touch()
    while not go.exists():
        time.sleep(0.0005)
    start = time.time()
    clock = time.perf_counter
    each = []
    for _ in range(n):
        t0 = clock()
        await store.update_raw(_increment, actor=ACTOR, reason="bench increment")
        each.append(clock() - t0)
    end = time.time()
    await store.close()
    return {"start": start, "end": end, "n": n, "warm": 1, "first": first,
            "pid": os.getpid(), "each": each}


def main(argv: list[str]) -> None:
    command = argv[0]
    if command == "open-head":
        out = open_head(argv[1])
    elif command == "writer":
        kind, target, n, ready, go = argv[1:6]
        schema = argv[6] if len(argv) > 6 else None
        store = open_store(kind, target, schema)
        out = asyncio.run(_writes(store, int(n), Path(ready), Path(go)))
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
