"""In-process CLI calls for tests, and an operator's installation to run them on.

`invoke()` is the one in-process runner (tests/test_cli.py's `Cli` and `Site.run` both
use it): the CLI through click's CliRunner isolation (stdout and stderr apart, the real
exit code) with a clean process state. `make_site()`: a config dir with moltis.toml
(comments, a secret) and provider_keys.json, and a data dir."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

TOML = """\
# the gateway of the team (hand-written)
[server]
bind = "127.0.0.1"
port = 13131  # the public port

[identity]
name = "Atlas"

[providers.openai]
enabled = true

[tools]
agent_timeout_secs = 600
"""

KEYS = {"anthropic": {"apiKey": "sk-ant-operator-0001", "models": ["claude-sonnet-4-5"]},
        "openai": {"apiKey": "sk-openai-operator-0002"}}


@dataclass
class Result:
    """One CLI call's outcome (the one result type of the in-process CLI tests)."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@contextlib.contextmanager
def cli_process_state() -> Iterator[None]:
    """What one `moltis-ledger` process would start from, and leave behind for nobody:
    the CLI configures the root logger (a handler on the stderr of that moment, a
    level), keeps the verbosity in a module global for `run()`, and `demo` rewrites
    MOLTIS_* variables. Each in-process call starts clean and puts all of it back, so
    no call sees the previous one's -v and no test sees a CLI's logging set-up."""
    import ledger.cli.app as cli_app

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    environ = dict(os.environ)
    cli_app._verbosity = 0
    try:
        yield
    finally:
        cli_app._verbosity = 0
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        for name in [n for n in os.environ if n not in environ]:
            del os.environ[name]
        os.environ.update(environ)


def invoke(args: list[str], *, input: str | None = None,
           env: dict[str, str | None] | None = None, cwd: Path | None = None) -> Result:
    """`moltis-ledger ARGS` in this process: `ledger.cli.run` (the real entry point, so
    exit codes and error printing are the real ones) inside click's CliRunner isolation
    (its own stdin, stdout and stderr, `env` changes applied and put back) and a clean
    `cli_process_state`."""
    from ledger.cli import run

    runner = CliRunner()
    with contextlib.ExitStack() as stack:
        stack.enter_context(cli_process_state())
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        stdout, stderr, _ = stack.enter_context(runner.isolation(input=input, env=env))
        # the runner wraps help at a forced 80 columns; a real process asks the
        # terminal (COLUMNS), and so does this call (isolation restores the value)
        click.formatting.FORCED_WIDTH = None
        code = run(args)
        sys.stdout.flush()
        sys.stderr.flush()
        return Result(code, stdout.getvalue().decode(), stderr.getvalue().decode())


@dataclass
class Site:
    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def toml(self) -> Path:
        return self.config_dir / "moltis.toml"

    @property
    def keys(self) -> Path:
        return self.config_dir / "provider_keys.json"

    @property
    def db(self) -> Path:
        return self.data_dir / "moltis.db"

    def run(self, *args: str, input: str | None = None) -> Result:
        return invoke(list(args), input=input)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self.run(*args, input=input)
        assert result.code == 0, (args, result)
        return result

    def edit(self, old: str, new: str) -> None:
        text = self.toml.read_text(encoding="utf-8")
        assert old in text, old
        self.toml.write_text(text.replace(old, new), encoding="utf-8")


def make_site(tmp_path: Path, *, keys: bool = True) -> Site:
    """The files of a Moltis installation; MOLTIS_CONFIG_DIR/DATA_DIR point at them
    (conftest's isolated_env)."""
    site = Site(tmp_path)
    site.config_dir.mkdir(parents=True, exist_ok=True)
    site.toml.write_text(TOML, encoding="utf-8")
    if keys:
        site.keys.write_text(json.dumps(KEYS, indent=2), encoding="utf-8")
    return site


def cli(capsys: Any, *args: str, code: int = 0) -> tuple[str, str]:
    """The CLI in this process (capsys captures it); asserts the exit code, returns
    (stdout, stderr)."""
    from ledger.cli.app import run  # the CLI's own entry, as `main` calls it

    capsys.readouterr()
    got = run(list(args))
    captured = capsys.readouterr()
    assert got == code, captured
    return captured.out, captured.err
