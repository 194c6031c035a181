"""Worker processes for concurrency and crash tests: `python -m tests.workers KIND ...`.

Each worker is a real OS process opening its own store, as separate gateways would."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time

from ledger import ConflictError, MoltisConfig, Secret


def _increment(cfg: MoltisConfig) -> None:
    cfg.tools.agent_timeout_secs += 1


async def increments(store, n: int) -> None:
    for _ in range(n):
        await store.update_raw(_increment, reason="increment")


def open_store(kind: str, target: str):
    if kind == "sqlite":
        from ledger import SqliteConfigStore

        return SqliteConfigStore(target, busy_timeout=30)
    if kind == "file":
        from ledger.stores.file_store import FileConfigStore

        return FileConfigStore(target)
    if kind == "postgres":
        from ledger.stores.postgres_store import PostgresConfigStore

        return PostgresConfigStore(target, schema=os.environ.get("LEDGER_TEST_PG_SCHEMA",
                                                                 "public"))
    raise SystemExit(f"unknown store kind {kind}")


async def watch_and_increment(store, n: int, actor: str, final_seq: int,
                              start_at: float = 0.0, timeout: float = 120.0,
                              barrier: bool = False) -> dict:
    """A gateway: `n` increments as `actor` (from time `start_at` on, or with `barrier`
    once the parent says "go" on stdin, so that several workers write at once) while
    watching the ledger until it has seen event `final_seq`. Reports what it saw (seq,
    actor) and the seqs it wrote. With `barrier` it first prints a "ready" line, once
    its watch has yielded the ledger's first event."""
    seen: list[tuple[int, str]] = []
    mine: list[int] = []
    ready = asyncio.Event()
    watching_now = asyncio.Event()

    async def watcher() -> None:
        stream = store.watch(after=0)
        ready.set()
        async for ev in stream:
            seen.append((ev.seq, ev.actor))
            watching_now.set()
            if ev.seq >= final_seq:
                return

    async def writer() -> None:
        await ready.wait()
        if barrier:  # every gateway started and watching: the parent starts them at once
            await watching_now.wait()
            print(json.dumps({"ready": actor}), flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        for _ in range(n):
            commit = await store.update_raw(_increment, actor=actor, reason="increment")
            mine.append(commit.seq)
            await asyncio.sleep(0)

    watching = asyncio.create_task(watcher())
    await writer()
    await asyncio.wait_for(watching, timeout)
    return {"actor": actor, "seen": seen, "mine": mine}


# -- crash trials (tests/torture/test_crash.py) ----------------------------------------
#
# The crash workers write one character to a phase file at each step of a write, so
# the parent can aim its SIGKILL at a phase and record where each kill landed:
#   0 idle (before the write)  F in fn  G BEGIN  I INSERT  N snapshot INSERT
#   B between INSERT and COMMIT  C COMMIT (and its fsync)  A acknowledged, not reported
#   W writing the temp file    S fsync of the temp file   R rename   D fsync of the folder


class _Phase:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __call__(self, code: str, offset: int = 0) -> None:
        os.pwrite(self._fd, code.encode(), offset)


def _ack(seq: int, expect: list) -> None:
    print(json.dumps({"seq": seq, "expect": expect}), flush=True)


async def crash_append(store, phase_file: str, seed: int) -> None:
    """Append forever through update_raw (with provider key sets, config secrets and
    larger multi-path changes mixed in), reporting each acknowledged seq and what it
    holds on stdout; sleeps a little inside fn and before COMMIT so kills land there."""
    from ledger.schema.providers import ProviderConfig

    rng = random.Random(seed)
    mark = _Phase(phase_file)
    ledger = store.ledger
    ledger.snapshot_every = 3  # kills land in snapshot-writing transactions too

    def tracer(_cursor, sql: str, _bindings) -> bool:
        if sql.startswith("BEGIN"):
            mark("G")
            mark("-", 1)  # the second byte says whether this transaction writes a snapshot
        elif sql.startswith("INSERT OR REPLACE INTO ledger_snapshots"):
            mark("N")
            mark("s", 1)
        elif sql.startswith("INSERT"):
            mark("I")
        elif sql == "COMMIT":
            mark("B")
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0, 0.003))
            mark("C")
        return True

    ledger.backend._conn.exec_trace = tracer
    actor = f"crash-{seed}"

    def pause() -> None:
        mark("F")
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0, 0.003))

    print("ready", flush=True)
    i = int(time.time() * 1000) % 1_000_000  # values differ from earlier workers' values
    while True:
        i += 1
        mark("0")
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0, 0.001))  # before BEGIN
        op = rng.random()
        if op < 0.55:
            port, name = 1000 + i % 60000, f"crash-{seed}-{i}"

            def fn(cfg: MoltisConfig, port: int = port, name: str = name) -> None:
                pause()
                cfg.server.port = port
                cfg.identity.name = name

            commit = await store.update_raw(fn, actor=actor, reason=f"op {i}")
            expect = [["config", ["server", "port"], "value", port],
                      ["config", ["identity", "name"], "value", name]]
        elif op < 0.70:
            provider, key = f"custom-p{i % 4}", f"sk-key-{seed}-{i}"
            pause()
            commit = await store.providers.set(provider, api_key=key, models=[f"m-{i}"],
                                               actor=actor, reason=f"op {i}")
            expect = [["keys", [provider, "apiKey"], "secret", key],
                      ["keys", [provider, "models"], "value", [f"m-{i}"]]]
        elif op < 0.85:
            key = f"sk-cfg-{seed}-{i}"

            def fn(cfg: MoltisConfig, key: str = key) -> None:
                pause()
                entry = cfg.providers.get("openai") or ProviderConfig()
                entry.api_key = Secret(key)
                cfg.providers["openai"] = entry

            commit = await store.update_raw(fn, actor=actor, reason=f"op {i}")
            expect = [["config", ["providers", "openai", "api_key"], "secret", key]]
        else:
            packages = [f"pkg-{i}-{j}" for j in range(40)]
            bots = {f"bot{j}": {"note": f"{seed}-{i}-{j}"} for j in range(25)}

            def fn(cfg: MoltisConfig, packages: list = packages, bots: dict = bots) -> None:
                pause()
                cfg.tools.exec.sandbox.packages = list(packages)
                for name, table in bots.items():
                    cfg.channels.telegram[name] = dict(table)

            commit = await store.update_raw(fn, actor=actor, reason=f"op {i}")
            expect = [["config", ["tools", "exec", "sandbox", "packages"], "value", packages]]
            expect += [["config", ["channels", "telegram", name, "note"], "value", t["note"]]
                       for name, t in bots.items()]
        mark("A")
        if not commit.appended:
            raise SystemExit(f"op {i} appended nothing")
        _ack(commit.seq, expect)


async def crash_file(store, phase_file: str, seed: int) -> None:
    """Rewrite a moltis.toml forever (version n: identity.name "v<n>", port 1000 + n,
    agent_timeout_secs n + 1), reporting each acknowledged version. Writes go out in
    small chunks with tiny pauses, so a kill can leave a half-written temp file."""
    rng = random.Random(seed)
    mark = _Phase(phase_file)
    real_write, real_fsync, real_replace = os.write, os.fsync, os.replace
    state = {"renamed": False}

    def write(fd: int, data) -> int:
        mark("W")
        view = memoryview(data)
        for start in range(0, len(view), 4096):
            real_write(fd, view[start:start + 4096])
            if rng.random() < 0.2:
                time.sleep(0.0002)
        return len(view)

    def fsync(fd: int) -> None:
        mark("D" if state["renamed"] else "S")
        real_fsync(fd)

    def replace(src, dst) -> None:
        mark("R")
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0, 0.002))
        real_replace(src, dst)
        state["renamed"] = True

    os.write, os.fsync, os.replace = write, fsync, replace  # this worker process only
    version = int((await store.raw_document())["identity"]["name"][1:])
    print("ready", flush=True)
    while True:
        version += 1
        state["renamed"] = False
        mark("0")

        def fn(cfg: MoltisConfig, n: int = version) -> None:
            mark("F")
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0, 0.002))
            cfg.identity.name = f"v{n}"
            cfg.server.port = 1000 + n
            cfg.tools.agent_timeout_secs = n + 1

        commit = await store.update_raw(fn, actor=f"file-{seed}", reason="version")
        mark("A")
        if not commit.appended:
            raise SystemExit(f"version {version} wrote nothing")
        print(json.dumps({"version": version}), flush=True)


# -- concurrent writers (tests/torture/test_writers.py) --------------------------------


async def _save_own(store, actor: str, typed: bool, rng: random.Random, report: dict) -> None:
    """Increment this writer's own key by read-modify-save with expected_seq, retrying
    on ConflictError: a silent overwrite would lose other writers' keys."""
    for _ in range(10_000):
        seq = await store.head_seq()  # the version first, then the content read at it
        if typed:
            cfg = await store.load_raw()
            own = cfg.channels.telegram.get(actor, {})
            cfg.channels.telegram[actor] = {"n": int(own.get("n", 0)) + 1}
            target = cfg
        else:
            doc = await store.raw_document()
            own = doc.setdefault("channels", {}).setdefault("telegram", {}).setdefault(
                actor, {})
            own["n"] = int(own.get("n", 0)) + 1
            target = doc
        try:
            commit = await store.save_raw(target, actor=actor, reason="own key",
                                          expected_seq=seq)
        except ConflictError:
            report["conflicts"] += 1
            await asyncio.sleep(rng.uniform(0, 0.002))
            continue
        if not commit.appended:
            raise SystemExit(f"{actor}: a save of a changed key appended nothing")
        report["saves"] += 1
        return
    raise SystemExit(f"{actor}: no save succeeded in 10000 tries")


async def _scratch_and_roll_back(store, actor: str, i: int, report: dict) -> None:
    """Set a scratch key, then roll back to the seq just before it, both guarded by
    expected_seq: the rollback undoes only this writer's change, or fails with
    ConflictError (and the scratch value stays)."""
    from ledger.ops.history import rollback

    seq = await store.head_seq()
    name = f"scratch-{actor}"
    try:
        commit = await store.update_raw(
            lambda cfg: cfg.channels.telegram.__setitem__(name, {"v": i}), actor=actor,
            reason="scratch", expected_seq=seq)
    except ConflictError:
        report["conflicts"] += 1
        return
    try:
        rollback(store.ledger, commit.seq - 1, actor=actor, expected_seq=commit.seq)
        report["rollbacks"] += 1
    except ConflictError:
        report["rollback_conflicts"] += 1
        report["scratch"] = {"v": i}


async def mixed_writer(store, actor: str, n_ops: int, seed: int, start_at: float) -> dict:
    rng = random.Random(seed)
    report = {"actor": actor, "increments": 0, "saves": 0, "conflicts": 0, "providers": 0,
              "last_key": None, "rollbacks": 0, "rollback_conflicts": 0, "scratch": None}
    await asyncio.sleep(max(0.0, start_at - time.time()))
    for i in range(n_ops):
        r = rng.random()
        if r < 0.4:
            await store.update_raw(_increment, actor=actor, reason="increment")
            report["increments"] += 1
        elif r < 0.7:
            await _save_own(store, actor, rng.random() < 0.5, rng, report)
        elif r < 0.85:
            key = f"sk-{actor}-{i}"
            await store.providers.set(f"custom-{actor}", api_key=key, models=[f"m{i}"],
                                      actor=actor, reason="provider key")
            report["providers"] += 1
            report["last_key"] = key
        else:
            await _scratch_and_roll_back(store, actor, i, report)
    return report


# -- full disk (tests/torture/test_disk.py) ----------------------------------------------


async def fill(store, kind: str) -> dict:
    """Write ever more until a write fails, then try a few more: report what was
    acknowledged and what each failure said (run under RLIMIT_FSIZE or on a tiny disk)."""
    from ledger import LedgerError

    acked: dict[str, str] = {}
    errors: list[list[str]] = []
    i = 0
    while len(errors) < 4 and i < 100_000:
        size = 10 if errors else (2000 if kind == "sqlite" else 20000)  # then small writes
        key, value = f"k{i}", f"{i}:" + "v" * size
        i += 1
        try:
            commit = await store.edit({("torture", key): value}, actor="filler", reason="fill")
        except LedgerError as err:
            errors.append([type(err).__name__, str(err)])
            continue
        if kind == "sqlite":
            acked[str(commit.seq)] = key
        else:
            acked[key] = value
    return {"acked": acked, "errors": errors}


def main(argv: list[str]) -> None:
    command, kind, target = argv[:3]
    store = open_store(kind, target)
    if command == "increment":
        asyncio.run(increments(store, int(argv[3])))
    elif command == "watch-increment":
        n, actor, final_seq = int(argv[3]), argv[4], int(argv[5])
        barrier = len(argv) > 6 and argv[6] == "barrier"
        start_at = float(argv[6]) if len(argv) > 6 and not barrier else 0.0
        report = asyncio.run(watch_and_increment(store, n, actor, final_seq, start_at,
                                                 barrier=barrier))
        print(json.dumps(report))
    elif command == "crash-append":
        asyncio.run(crash_append(store, argv[3], int(argv[4])))
    elif command == "crash-file":
        asyncio.run(crash_file(store, argv[3], int(argv[4])))
    elif command == "fill":
        print(json.dumps(asyncio.run(fill(store, kind))))
    elif command == "mixed":
        actor, n_ops, seed, start_at = argv[3], int(argv[4]), int(argv[5]), float(argv[6])
        report = asyncio.run(mixed_writer(store, actor, n_ops, seed, start_at))
        print(json.dumps(report))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
