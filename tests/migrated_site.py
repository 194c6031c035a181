"""A migrated SQLite installation, for tests that attack its files and then run the CLI
(and the library) as separate processes against it.

The set-up (the migration, the writes before an attack) runs the CLI in this process
(`cli_here`): a fresh interpreter costs ~0.4 s a run and proves nothing about a set-up.
What a test is about (the read or write that must refuse or serve, with its exit code
and its stderr) runs in a real process of its own (`cli_process`), as an operator's
`moltis-ledger` does: the fast `get` path, a process that holds no state of the writes
before it.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from ledger.cli.demo import moltis_env_only

SECRET = "sk-PLAINTEXT-SECRET-7f3a9c1e5b"


def cli_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ledger ARGS` in its own process, with exactly the environment `env`."""
    return subprocess.run([sys.executable, "-m", "ledger", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def cli_here(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (its own entry `ledger.cli.app.run`, as `main` calls it)
    with the MOLTIS_* variables of `env`; the same result shape as `cli_process`. For
    set-ups: every store it opens is closed when it returns, and the root logger is
    left as it was."""
    import logging

    from ledger.cli.app import run

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with moltis_env_only(env), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            code = run(list(args))
    finally:  # the CLI configures the root logger (its stderr handler): put it back
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(["moltis-ledger", *args], code, out.getvalue(),
                                       err.getvalue())


def site_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a migrated ledger under `tmp_path` (config/, data/, a key in
    $MOLTIS_LEDGER_KEY); moltis.toml held SECRET before the migration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")}
    config, data = tmp_path / "config", tmp_path / "data"
    config.mkdir()
    data.mkdir()
    (config / "moltis.toml").write_text(
        f'[server]\nport = 13131\n[providers.openai]\napi_key = "{SECRET}"\n',
        encoding="utf-8")
    env.update(MOLTIS_CONFIG_DIR=str(config), MOLTIS_DATA_DIR=str(data),
               MOLTIS_LEDGER_KEY=secrets.token_hex(32), MOLTIS_LEDGER_ACTOR="tester@ci",
               MOLTIS_CONFIG_BACKEND="sqlite")
    migrated = cli_here(env, "migrate", "--actor", "installer")
    assert migrated.returncode == 0, (migrated.stdout, migrated.stderr)
    return env


def keyed_env(tmp_path: Path, actor: str, **extra: str) -> dict[str, str]:
    """An operator's empty site under `tmp_path` (config/, data/), and the environment
    of a CLI process run against it: a random ledger key, this checkout's code."""
    (tmp_path / "config").mkdir()
    (tmp_path / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")}
    env.update(MOLTIS_CONFIG_DIR=str(tmp_path / "config"),
               MOLTIS_DATA_DIR=str(tmp_path / "data"),
               MOLTIS_LEDGER_KEY=secrets.token_hex(32), MOLTIS_LEDGER_ACTOR=actor,
               PYTHONPATH=str(Path(__file__).resolve().parents[1]), HOME=str(tmp_path),
               **extra)
    return env


def file_site(tmp_path: Path, name: str, text: str, actor: str) -> dict[str, str]:
    """An operator's config dir holding only the config file `name` (no ledger yet), and
    the environment of a CLI run against it (this checkout's code)."""
    (tmp_path / "config").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "config" / name).write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOLTIS_")}
    env.update(MOLTIS_CONFIG_DIR=str(tmp_path / "config"),
               MOLTIS_DATA_DIR=str(tmp_path / "data"),
               MOLTIS_LEDGER_KEY_FILE=str(tmp_path / "ledger.key"),
               MOLTIS_LEDGER_ACTOR=actor, HOME=str(tmp_path),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env


def migrate_file_site(env: dict[str, str], name: str = "moltis.yaml"
                      ) -> tuple[subprocess.CompletedProcess[str], str]:
    """`migrate` of a `file_site` in a process of its own, and the config file's text
    after it (whose secrets it must have masked)."""
    done = cli_process(env, "migrate")
    return done, (Path(env["MOLTIS_CONFIG_DIR"]) / name).read_text(encoding="utf-8")


def check_file(env: dict[str, str], path: Path) -> dict[str, Any]:
    """`check --file PATH --json`'s report."""
    import json

    return json.loads(cli_process(env, "--json", "check", "--file", str(path)).stdout)


def readings_with_a_comment(tmp_path: Path, name: str, body: str) -> list[Any]:
    """The document `read_config_file` makes of the config file `name` holding `body`,
    and of the same file with a comment that spells "inf" above it (or the error's
    type): a reading must not depend on a comment (reviews r21-r23)."""
    from ledger.errors import LedgerError
    from ledger.stores.config_file import read_config_file

    readings: list[Any] = []
    for folder, text in (("plain", body), ("commented", "# see the info channel\n" + body)):
        path = tmp_path / folder / name
        path.parent.mkdir()
        path.write_text(text, encoding="utf-8")
        try:
            readings.append(read_config_file(path))
        except LedgerError as err:
            readings.append(type(err).__name__)
    return readings


def truncate_last_event(db: Path, meta_rows: tuple[str, ...] = ()) -> None:
    """What an attacker with write access to the file (no key) does: drop the
    append-only trigger, delete the last event (and its snapshots), delete `meta_rows`
    from ledger_meta, put the trigger back (the file looks untouched)."""
    import apsw

    con = apsw.Connection(str(db))
    (sql,), = con.execute("SELECT sql FROM sqlite_master WHERE name = "
                          "'ledger_events_no_delete'").fetchall()
    head = con.execute("SELECT max(seq) FROM ledger_events").fetchone()[0]
    con.execute("DROP TRIGGER ledger_events_no_delete")
    con.execute("DELETE FROM ledger_events WHERE seq = ?", (head,))
    con.execute("DELETE FROM ledger_snapshots WHERE seq >= ?", (head,))
    if meta_rows:
        con.execute(f"DELETE FROM ledger_meta WHERE key IN ({','.join('?' * len(meta_rows))})",
                    meta_rows)
    con.execute(sql)
    con.close()


def drop_marks(tmp_path: Path, *dirs: str) -> None:
    """Delete the head mark (config/) and the head mirror (data/) of the site, or only
    those in `dirs`."""
    for where in dirs or ("config", "data"):
        for mark in tmp_path.glob(f"{where}/ledger-head*"):
            mark.unlink()
