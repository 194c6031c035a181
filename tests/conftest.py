"""Shared fixtures: an isolated environment per test, the Moltis fixtures, and a
factory for every ConfigStore backend (the contract suite runs against each).

The Moltis fixtures live in `tests/fixtures/moltis/`, copied unchanged from Moltis's
own files (the first-run template, the documentation's example, the provider key file
and its upstream shapes, the TOML snippets of the upstream docs), so a plain clone runs
every test; nothing is read from outside the repository.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "moltis"
PG_URL_VAR = "LEDGER_TEST_PG_URL"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's ~/.moltis or real MOLTIS_* variables."""
    for name in list(os.environ):
        if name.startswith("MOLTIS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MOLTIS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MOLTIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOLTIS_LEDGER_KEY", secrets.token_hex(32))
    monkeypatch.setenv("MOLTIS_LEDGER_ACTOR", "tester@ci")


@pytest.fixture
def fixtures_dir() -> Path:
    """The Moltis fixtures (part of the repository: a missing one is a failure, not a skip)."""
    return FIXTURES


def _pg_url() -> str | None:
    url = os.environ.get(PG_URL_VAR)
    if not url and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {PG_URL_VAR} is not set: the PostgreSQL tests must run in CI")
    return url


StoreFactory = Callable[[], Any]


def make_factory(kind: str, tmp_path: Path) -> StoreFactory:
    counter = iter(range(10**9))

    def factory() -> Any:
        n = next(counter)
        if kind == "memory":
            from ledger import MemoryConfigStore

            return MemoryConfigStore()
        if kind == "sqlite":
            from ledger import SqliteConfigStore

            return SqliteConfigStore(tmp_path / f"ledger-{n}.db")
        if kind == "file":
            from ledger.stores.file_store import FileConfigStore

            return FileConfigStore(tmp_path / f"conf-{n}" / "moltis.toml")
        if kind == "postgres":
            url = _pg_url()
            if not url:
                pytest.skip(f"set {PG_URL_VAR}=postgresql://... to run the PostgreSQL tests "
                            "(.ci/run starts a throwaway server and sets it)")
            from tests.pg import fresh_pg_store

            return fresh_pg_store(url)
        raise AssertionError(kind)

    return factory


LEDGER_KINDS = ["memory", "sqlite", "postgres"]
ALL_KINDS = [*LEDGER_KINDS, "file"]


@pytest.fixture(params=ALL_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return make_factory(request.param, tmp_path)


@pytest.fixture(params=LEDGER_KINDS)
def ledger_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return make_factory(request.param, tmp_path)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say in the log how many PostgreSQL tests ran (CI must show they did)."""
    counts = {
        outcome: sum(1 for r in terminalreporter.stats.get(outcome, [])
                     if "postgres" in getattr(r, "nodeid", ""))
        for outcome in ("passed", "failed", "skipped")
    }
    if any(counts.values()):
        terminalreporter.write_line(
            f"postgres: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped ({PG_URL_VAR} "
            f"{'set' if os.environ.get(PG_URL_VAR) else 'not set'})")
