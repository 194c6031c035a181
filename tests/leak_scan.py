"""The leak scan of issue 14's acceptance tests (tests/test_leak_scan_*.py): every
command, human and `--json`, at every verbosity, the logs, masked exports, bundles and
the database files, none of which may hold one of the test's secrets."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ledger.cli.app import run


def cli_text(capsys: Any, *args: str) -> str:
    """The CLI in this process: what it printed, stdout then stderr."""
    capsys.readouterr()
    run(list(args))
    out, err = capsys.readouterr()
    return out + err


def assert_clean(blob: str | bytes, where: str, leaks: Mapping[str, str]) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for name, secret in leaks.items():
        assert secret.encode() not in data, f"{name} secret found in {where}"


def scan_commands(capsys: Any, caplog: Any, commands: Iterable[tuple[str, ...]],
                  leaks: Mapping[str, str]) -> None:
    """Every command at every verbosity, human and (but `watch`) `--json`, then every
    log record they made."""
    with caplog.at_level(logging.DEBUG):
        for verbosity in ((), ("-v",), ("-vv",)):
            for args in commands:
                assert_clean(cli_text(capsys, *verbosity, *args),
                             " ".join((*verbosity, *args)), leaks)
                if args[0] != "watch":
                    assert_clean(cli_text(capsys, *verbosity, "--json", *args),
                                 "--json " + " ".join(args), leaks)
    assert_clean(caplog.text + repr([r.__dict__ for r in caplog.records]), "logs", leaks)


def scan_exports_and_files(capsys: Any, tmp_path: Path, data: Path,
                           leaks: Mapping[str, str]) -> None:
    """A masked export, a bundle with and without secrets (what each printed and each
    file), then, after a verify, the database, its WAL and SHM in `data`."""
    export_dir = tmp_path / "exp"
    bundle = tmp_path / "all.bundle"
    for args in (("export", "-o", str(export_dir), "--masked"), ("bundle", "-o", str(bundle)),
                 ("bundle", "-o", str(tmp_path / "s.bundle"), "--with-secrets")):
        assert_clean(cli_text(capsys, *args), " ".join(args), leaks)
    for path in [*export_dir.iterdir(), bundle, tmp_path / "s.bundle"]:
        assert_clean(path.read_bytes(), str(path), leaks)
    cli_text(capsys, "verify")
    for path in data.glob("moltis.db*"):
        assert_clean(path.read_bytes(), str(path), leaks)
