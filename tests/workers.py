"""Worker processes for concurrency and crash tests: `python -m tests.workers KIND ...`.

Each worker is a real OS process opening its own store, as separate gateways would."""

from __future__ import annotations

import asyncio
import sys

from ledger import MoltisConfig


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
        from ledger.file_store import FileConfigStore

        return FileConfigStore(target)
    if kind == "postgres":
        from ledger.backends.postgres import PostgresConfigStore

        return PostgresConfigStore(target)
    raise SystemExit(f"unknown store kind {kind}")


def main(argv: list[str]) -> None:
    command, kind, target = argv[:3]
    store = open_store(kind, target)
    if command == "increment":
        asyncio.run(increments(store, int(argv[3])))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
