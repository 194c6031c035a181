"""The torture suite's marker and its summary line at the end of the pytest run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.torture import stats

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.torture)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    line = stats.summary()
    if line is not None:
        terminalreporter.write_sep("=", "torture suite")
        terminalreporter.write_line(line)
