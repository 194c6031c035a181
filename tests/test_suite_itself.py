"""The test suite's own promises: it runs from a plain clone (the Moltis fixtures are
in the repository), the default run leaves the torture and slow trials to `.ci/run`,
and the PostgreSQL line of the summary counts what really happened.

The pytest runs here are in-process (`pytester`), on small throwaway test files, with
this repository's conftest loaded as a plugin and its pytest settings copied.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
PYTEST_INI = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
    "tool"]["pytest"]["ini_options"]


# -- fixtures ---------------------------------------------------------------------------


def test_the_moltis_fixtures_are_in_the_repository() -> None:
    assert FIXTURES == ROOT / "tests" / "fixtures" / "moltis"
    for name in ("template.moltis.toml", "docs-example.moltis.toml", "provider_keys.json"):
        assert (FIXTURES / name).is_file(), name
    assert sorted((FIXTURES / "upstream-docs").glob("*.toml"))
    assert sorted((FIXTURES / "provider-keys-shapes").glob("*.json"))


def test_a_read_outside_the_repository_is_seen(tmp_path: Path) -> None:
    """The conftest's audit hook fails the session when a test opens a file in the
    folder beside the original checkout (a plain clone has no such folder): a path
    inside it is recognised, one elsewhere is not, and nothing was read there so far."""
    from tests.conftest import outside_reads, reads_outside

    outside = tmp_path / "elsewhere"
    assert reads_outside(str(outside / "fixtures" / "moltis.toml"), outside)
    assert reads_outside(outside, outside)
    assert not reads_outside(str(tmp_path / "elsewhere-too" / "x"), outside)
    assert not reads_outside(str(FIXTURES / "provider_keys.json"))
    assert not outside_reads, outside_reads


# -- marked suites ------------------------------------------------------------------------


def _project_settings(pytester: pytest.Pytester) -> None:
    """This repository's [tool.pytest.ini_options], in the throwaway folder."""
    lines = ["[tool.pytest.ini_options]"]
    for key, value in PYTEST_INI.items():
        if key != "testpaths":
            lines.append(f"{key} = {_toml(value)}")
    pytester.makepyprojecttoml("\n".join(lines) + "\n")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


MARKED = """
import pytest

def test_plain():
    pass

@pytest.mark.torture
def test_a_torture_trial():
    pass

@pytest.mark.slow
def test_a_slow_one():
    pass
"""


def test_the_default_run_leaves_torture_and_slow_tests_out(pytester: pytest.Pytester) -> None:
    _project_settings(pytester)
    pytester.makepyfile(test_marked=MARKED)
    default = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    default.assert_outcomes(passed=1, deselected=2)
    marked = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "torture or slow")
    marked.assert_outcomes(passed=2, deselected=1)


# -- the PostgreSQL summary ---------------------------------------------------------------


PG_TESTS = """
import pytest

@pytest.mark.postgres
def test_ran_on_the_server():
    pass

@pytest.mark.postgres
def test_broke_on_the_server():
    assert False

@pytest.mark.postgres
def test_had_no_server():
    pytest.skip("no server")

def test_postgres_dsn_parsing_needs_no_server():
    pass

def test_on_every_ledger(ledger_factory):
    ledger_factory()

@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_on_both(kind):
    if kind == "postgres":
        pytest.skip("no server")
"""


def _pg_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
            ci: bool) -> pytest.RunResult:
    monkeypatch.delenv("LEDGER_TEST_PG_URL", raising=False)
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    _project_settings(pytester)
    pytester.makepyfile(test_pg=PG_TESTS)
    return pytester.runpytest_inprocess("-p", "tests.conftest", "-p", "no:cacheprovider")


def test_the_postgres_summary_counts_outcomes_of_postgres_tests(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unmarked test whose name mentions postgres is not counted; the postgres
    parameter of the store factories, and a test parametrized with "postgres", are, and
    skip without a server."""
    result = _pg_run(pytester, monkeypatch, ci=False)
    result.assert_outcomes(passed=5, failed=1, skipped=3)
    summary = [line for line in result.outlines if line.startswith("postgres:")]
    assert summary == [
        "postgres: 1 passed, 1 failed, 3 skipped (LEDGER_TEST_PG_URL not set)"], summary


def test_under_ci_a_postgres_test_never_skips(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _pg_run(pytester, monkeypatch, ci=True)
    result.assert_outcomes(passed=5, failed=4)
    assert "postgres: 1 passed, 4 failed, 0 skipped" in result.stdout.str()
    result.stdout.fnmatch_lines(["*CI=true: this PostgreSQL test must run, but it skipped*"])
