"""Shared fixtures: an isolated environment per test, the Moltis fixtures, and a
factory for every ConfigStore backend (the contract suite runs against each); the
PostgreSQL line of the run's summary.

The Moltis fixtures live in `tests/fixtures/moltis/`, copied unchanged from Moltis's
own files (the first-run template, the documentation's example, the provider key file
and its upstream shapes, the TOML snippets of the upstream docs), so a plain clone runs
every test; nothing is read from outside the repository.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Callable, Coroutine, Generator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
pytest_plugins = ("pytester",)  # tests/test_suite_itself.py runs small pytest sessions

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "moltis"
PG_URL_VAR = "LEDGER_TEST_PG_URL"

# The steering folder beside the original checkout is not part of a clone: a test that
# opened a file there would pass here and fail (or skip) anywhere else. An audit hook
# sees every open() of the test process and the session fails if one went there.
OUTSIDE_REPOSITORY = Path(__file__).resolve().parents[2] / "shared"
outside_reads: list[str] = []


def reads_outside(path: object, outside: Path = OUTSIDE_REPOSITORY) -> bool:
    """Whether an opened path lies in the folder outside the repository."""
    if not isinstance(path, str | bytes | os.PathLike):
        return False
    try:
        full = os.path.abspath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return full == str(outside) or full.startswith(str(outside) + os.sep)


def _audit_open(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and args and reads_outside(args[0]):
        outside_reads.append(os.fsdecode(args[0]))


sys.addaudithook(_audit_open)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if outside_reads:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
    # and no default reaches the real home: a KeySource or store given its own `env`
    # mapping (or a child process given one) falls back to ~/.config/moltis, whose head
    # mark the default run used to rewrite
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MOLTIS_LEDGER_KEY", secrets.token_hex(32))
    monkeypatch.setenv("MOLTIS_LEDGER_ACTOR", "tester@ci")


@pytest.fixture
def fixtures_dir() -> Path:
    """The Moltis fixtures (part of the repository: a missing one is a failure, not a skip)."""
    return FIXTURES


@pytest.fixture
def docs_site(fixtures_dir: Path) -> Path:
    """The docs example migrated by the CLI (in-process) into the test's own config and
    data dirs (MOLTIS_CONFIG_DIR / MOLTIS_DATA_DIR); returns the config dir."""
    from ledger.cli import app

    config = Path(os.environ["MOLTIS_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    toml = (fixtures_dir / "docs-example.moltis.toml").read_text(encoding="utf-8")
    (config / "moltis.toml").write_text(toml, encoding="utf-8")
    assert app.run(["migrate", "--actor", "installer"]) == 0
    return config


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


# The PostgreSQL parameter carries the `postgres` mark, so the summary counts those tests
# and `-m postgres` / `-m "not postgres"` select them like test_postgres.py's.
LEDGER_KINDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
ALL_KINDS = [*LEDGER_KINDS, "file"]


@pytest.fixture(params=ALL_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return make_factory(request.param, tmp_path)


@pytest.fixture(params=LEDGER_KINDS)
def ledger_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return make_factory(request.param, tmp_path)


# -- the PostgreSQL line of the summary ----------------------------------------------
#
# It counts what pytest decided for each test marked `postgres` (by hand, by module, or
# as the postgres parameter of the store factories): one outcome per test, taken from
# its setup, call and teardown reports. A name that merely mentions PostgreSQL is not a
# PostgreSQL test; a skipped one is not a passed one.

_PG_OUTCOMES = pytest.StashKey[dict[str, str]]()


def _is_pg(item: pytest.Item) -> bool:
    return item.get_closest_marker("postgres") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test parametrized with the value "postgres" (`@pytest.mark.parametrize("kind",
    ["sqlite", "postgres"])`) runs on PostgreSQL in that case: it gets the mark, so it is
    counted, selected by -m postgres, and never skips under CI=true."""
    del config
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgres" in callspec.params.values() and not _is_pg(item):
            item.add_marker(pytest.mark.postgres)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_PG_OUTCOMES] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Records each PostgreSQL test's outcome, from the report pytest will print (this
    wrapper is outermost, so xfail handling has already happened). Under CI=true such a
    test never skips: whatever the reason (no server, a DSN the test cannot use), the
    skip becomes a failure that says so."""
    report: pytest.TestReport = yield
    if not _is_pg(item):
        return report
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI=true: this PostgreSQL test must run, but it skipped: {reason}"
    outcomes = item.config.stash[_PG_OUTCOMES]
    if report.failed:
        outcomes[report.nodeid] = "failed"  # a failed setup or teardown fails the test
    elif report.skipped:
        outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        outcomes.setdefault(report.nodeid, "passed")
    return report


def pg_summary(outcomes: dict[str, str]) -> str:
    counts = {kind: sum(1 for o in outcomes.values() if o == kind)
              for kind in ("passed", "failed", "skipped")}
    return (f"postgres: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line saying how many PostgreSQL tests passed, failed and skipped (CI's log
    must show they ran); nothing when none was selected. Also names every file a test
    opened outside the repository (the session then fails)."""
    for path in dict.fromkeys(outside_reads):
        terminalreporter.write_line(f"read outside the repository (copy it into "
                                    f"tests/fixtures/): {path}", red=True)
    outcomes = config.stash.get(_PG_OUTCOMES, {})
    if outcomes:
        where = "set" if os.environ.get(PG_URL_VAR) else "not set"
        terminalreporter.write_line(f"{pg_summary(outcomes)} ({PG_URL_VAR} {where})")


@pytest.fixture(autouse=True)
def restore_logging() -> Any:
    """The CLI run in-process configures the root logger (its stderr handler, -v
    levels); put it back, so a later test still sees the library silent by default."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ledger key in a file (MOLTIS_LEDGER_KEY_FILE), not in the environment."""
    monkeypatch.delenv("MOLTIS_LEDGER_KEY")
    path = tmp_path / "keys" / "ledger.key"
    monkeypatch.setenv("MOLTIS_LEDGER_KEY_FILE", str(path))
    return path


@pytest.fixture
def pg_url() -> str:
    """The throwaway PostgreSQL server's DSN; the test is skipped without one."""
    url = _pg_url()
    if not url:
        pytest.skip(f"set {PG_URL_VAR}=postgresql://... to run the PostgreSQL tests: "
                    'eval "$(scripts/pg-test-server start)" starts a throwaway server')
    return url
