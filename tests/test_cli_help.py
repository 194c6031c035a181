"""Docs are tests: every command has help with an Example, is documented in
docs/cli.md, and the exit codes the docs promise are the ones the CLI maps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from ledger.cli.app import cli, exit_code_for
from ledger.errors import (
    ConfigValidationError,
    ConflictError,
    InvalidPathError,
    LedgerError,
    ReadOnlyError,
    SecretDestroyedError,
    StoreBusyError,
    VerificationError,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def walk(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    # the group loads its commands lazily: ask it, as click does
    ctx = click.Context(group, **group.context_settings)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        full = f"{prefix}{name}"
        yield full, command
        if isinstance(command, click.Group):
            yield from walk(command, f"{full} ")


COMMANDS = list(walk(cli))


def help_text(name: str, command: click.Command) -> str:
    # with the group's context settings: click caches each command's help option from
    # the first context it sees, and a bare one would leave `-h` unknown in-process
    parent = click.Context(cli, info_name="moltis-ledger", **cli.context_settings)
    return command.get_help(click.Context(command, info_name=name, parent=parent))


def test_the_contract_commands_exist() -> None:
    names = {name for name, _ in COMMANDS}
    assert names >= {
        "migrate", "show", "get", "set", "unset", "check", "log", "diff", "blame",
        "rollback", "export", "backup", "restore", "bundle", "import-bundle",
        "verify-bundle", "verify", "watch", "providers", "providers list", "providers get",
        "providers set", "providers remove", "providers effective", "shred",
        "rebuild-snapshots", "demo",
    }


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_an_example(name: str, command: click.Command) -> None:
    text = help_text(name, command)
    assert "Example:" in text, f"`{name} --help` has no Example section"
    example = text.split("Example:", 1)[1]
    assert "moltis-ledger" in example, f"`{name}`: the example shows no command line"
    assert command.get_short_help_str(), name


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_is_documented(name: str, command: click.Command) -> None:
    del command
    text = DOCS.read_text(encoding="utf-8")
    assert re.search(rf"^### `{re.escape(name)}\b", text, re.MULTILINE), (
        f"docs/cli.md has no section for `{name}`")


def test_read_commands_take_json() -> None:
    for name, command in COMMANDS:
        if isinstance(command, click.Group) or name == "demo":
            continue
        flags = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert "--json" in flags, f"`{name}` has no --json"


def test_exit_codes_are_mapped_in_one_place_and_documented() -> None:
    cases = {
        VerificationError("broken", 3): 3,
        ConflictError(1, 2): 4,
        ReadOnlyError("ro"): 5,
        StoreBusyError("busy"): 5,
        InvalidPathError("a..b"): 1,
        ConfigValidationError("bad", "server.port"): 1,
        SecretDestroyedError("gone"): 1,
        LedgerError("other"): 1,
    }
    for err, code in cases.items():
        assert exit_code_for(err) == code, err
    docs = DOCS.read_text(encoding="utf-8")
    for code, meaning in ((0, "ok"), (1, "error"), (2, "usage"), (3, "verification failed"),
                          (4, "conflict"), (5, "read-only or locked")):
        assert re.search(rf"\|\s*{code}\s*\|\s*{meaning}", docs), (code, meaning)


def test_unexpected_errors_print_one_line(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import ledger.cli.app as cli_module

    def boom(*_args: object, **_kw: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_module, "configure_logging", lambda _v: None)
    monkeypatch.setattr(cli_module, "_verbosity", 0)  # -v below sets it: put it back after
    monkeypatch.setattr(cli_module.State, "store", boom)
    assert cli_module.run(["show"]) == 1
    err = capsys.readouterr().err
    assert "unexpected RuntimeError: boom" in err and "rerun with -v" in err
    assert "Traceback" not in err
    assert cli_module.run(["-v", "show"]) == 1
    assert "Traceback" in capsys.readouterr().err
