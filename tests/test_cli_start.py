"""The CLI starts fast (issue 16): commands import only what they use. Checked by what
is in `sys.modules` after a real command ran in a fresh interpreter, never by time."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import ledger.cli
from ledger.cli import app
from tests.cli_probe import THROUGH_RUN
from tests.cli_probe import probe as probe_cli
from tests.conftest import run

# What `get` must not load. The check for a hand-edited moltis.toml that runs before
# every command loads none of the import machinery while the file is unchanged either
# (tests/test_hand_edit_import.py::test_get_loads_nothing_heavy_while_the_file_is_unchanged).
HEAVY = ["asyncio", "rich", "cryptography",
         "ledger.cli.admin_cmds", "ledger.cli.history_cmds", "ledger.cli.switch_cmds",
         "ledger.cli.serve_cmd", "ledger.web", "ledger.schema", "ledger.ops.migrate",
         "ledger.typed.layers", "ledger.typed.head_cache", "tomlkit"]


def probe(*args: str) -> tuple[int, set[str], str]:
    return probe_cli(*args, script=THROUGH_RUN)


def make_ledger(tmp_path: Path) -> Path:
    from ledger import SqliteConfigStore

    db = Path(os.environ["MOLTIS_DATA_DIR"]) / "moltis.db"  # where the gateway looks
    db.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteConfigStore(db)
    run(store.save_raw({"server": {"port": 13131}}, actor="setup"))
    store.ledger.close()
    return db


def test_get_imports_neither_asyncio_nor_rich_nor_the_schema(tmp_path):
    db = make_ledger(tmp_path)
    assert db.exists()
    code, modules, output = probe("get", "server.port")
    assert (code, output) == (0, "13131")
    loaded = [m for m in HEAVY if m in modules]
    assert not loaded, f"`get` imported {loaded}"


def test_version_does_not_even_import_click():
    proc = subprocess.run([sys.executable, "-c", "import sys, ledger.cli\n"
                           "try:\n    ledger.cli.main(['--version'])\n"
                           "except SystemExit as stop:\n"
                           "    print(stop.code, 'click' in sys.modules)"],
                          capture_output=True, text=True, check=True, timeout=120)
    first, last = proc.stdout.strip().splitlines()
    assert last == "0 False"
    # the same line click's own --version option prints
    assert first == CliRunner().invoke(ledger.cli.cli, ["--version"]).output.strip()


def test_every_command_module_is_in_the_lazy_table():
    """A command module added without a row in COMMANDS would be invisible; a row
    without its command would break `-h`."""
    package = Path(ledger.cli.__file__).parent
    defined: dict[str, str] = {}
    for info in pkgutil.iter_modules([str(package)]):
        module = importlib.import_module(f"ledger.cli.{info.name}")
        for name, command in list(app.cli.commands.items()):
            callback = command.callback
            if callback is not None and callback.__module__ == module.__name__:
                defined[name] = module.__name__
    assert defined == app.COMMANDS


def test_help_lists_every_command_and_unknown_commands_are_usage_errors():
    runner = CliRunner()
    result = runner.invoke(ledger.cli.cli, ["-h"])
    assert result.exit_code == 0, (result.output, result.exception)
    section = result.output.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^  (\S+)", section, re.M))
    assert listed == set(app.COMMANDS), result.output
    wrong = runner.invoke(ledger.cli.cli, ["gett", "server.port"])
    assert wrong.exit_code == 2 and "No such command 'gett'" in wrong.output
