"""A format-1 ledger that an older release filled with sealed list elements is raised to
format 2 by the first write of this release (the head state is checked once per ledger
object, in that write's transaction), so a release from before issue 14 refuses it
instead of handing the gateway `{"$secret": …}` tables. The real 8b561be (which seals
secrets inside lists but does not raise the version) writes the ledger, in its own
process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import apsw

from ledger import SqliteConfigStore
from ledger.backends.memory import MemoryBackend
from ledger.engine.format_check import format_problem
from tests.conftest import run
from tests.migrated_site import cli_here
from tests.test_format_older_release import older, older_cli

__all__ = ["older"]  # the fixture, imported from the older-release tests


def _stated(db: Path) -> int:
    c = apsw.Connection(str(db))
    try:
        row = c.execute("SELECT value FROM ledger_meta WHERE key='format_version'").fetchone()
    finally:
        c.close()
    return int(row[0])


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledger", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**__import__("os").environ,
                               "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


def test_a_release_of_this_session_leaves_a_sealed_list_ledger_at_format_1(
        older: Path, tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    # the set-up and the verifies run the CLI in this process; the write of this release
    # after the older one's runs in a new process (a fresh ledger object)
    assert cli_here(dict(os.environ), "--db", str(db), "set", "server.port",
                    "8111").returncode == 0
    assert older_cli(older, tmp_path, "--db", str(db), "set", "mcp.servers.gh.command",
                     "gh").returncode == 0
    wrote = older_cli(older, tmp_path, "--db", str(db), "set", "mcp.servers.gh.args",
                      '["--api-key", "sk-OLDER-0001aaaaaaaa"]')
    assert wrote.returncode == 0, wrote.stderr
    assert _stated(db) == 1  # the older release cannot know
    # verify names it as a note, with what would mishandle it (not 8b561be)
    checked = cli_here(dict(os.environ), "--db", str(db), "verify")
    assert checked.returncode == 0, checked.stderr
    said = checked.stdout + checked.stderr
    assert "28ae258" in " ".join(said.split()), said
    # this release writes on: a plain value, in a new process (no sealed element in it)
    assert _cli(tmp_path, "--db", str(db), "set", "server.port", "8112").returncode == 0
    assert _stated(db) == 2, "this release wrote to it and left it at format 1"
    checked = cli_here(dict(os.environ), "--db", str(db), "verify")
    assert checked.returncode == 0 and "28ae258" not in checked.stdout + checked.stderr


def test_the_first_write_of_a_ledger_object_raises_the_format(tmp_path: Path) -> None:
    """In-process: the ledger says 1 while its head holds a sealed list element (what an
    older release leaves); a plain write through an already-open store raises it."""
    db = tmp_path / "m.db"
    store = SqliteConfigStore(db)
    run(store.edit({("mcp", "servers", "gh", "command"): "gh",
                    ("mcp", "servers", "gh", "args"): ["--api-key", "sk-list-secret-0003"]},
                   reason="a secret inside a list"))
    assert store.ledger.backend.get_meta("format_version") == "2"
    store.ledger.close()
    c = apsw.Connection(str(db))  # what 8b561be leaves: the same rows, saying format 1
    c.execute("UPDATE ledger_meta SET value='1' WHERE key='format_version'")
    c.close()
    store = SqliteConfigStore(db)
    assert store.ledger.head_state().seq == 1  # a read alone writes nothing
    assert _stated(db) == 1
    run(store.edit({("server", "port"): 8113}, reason="plain"))
    assert _stated(db) == 2
    store.ledger.close()


def test_a_ledger_without_sealed_lists_stays_at_format_1(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store = SqliteConfigStore(db)
    run(store.edit({("mcp", "servers", "gh", "args"): ["--verbose"]}, reason="plain list"))
    run(store.providers.set("openai", api_key="sk-a-plain-secret-leaf-0004"))
    run(store.edit({("server", "port"): 8114}, reason="plain"))
    store.ledger.close()
    assert _stated(db) == 1


def test_the_format_note_names_the_releases_that_mishandle_sealed_lists() -> None:
    backend = MemoryBackend()
    note = format_problem(backend, 7, "event")
    assert note is not None
    assert "28ae258" in note and "issue 14" in note, note
