"""A keyed open of a ledger whose head MAC row does not vouch for its whole log: a MAC
row deleted with a truncated tail is refused; a tail written without the key is served
with a warning. Real SQLite files, real processes and the real CLI (the CLI prints
what a separate process logs).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.migrated_site import (
    cli_here,
    cli_process,
    drop_marks,
    site_env,
    truncate_last_event,
)

MAC_ROWS = ("head_mac", "head_signature")


def test_keyed_get_refuses_a_rolled_back_log_whose_mac_row_was_deleted(
        tmp_path: Path) -> None:
    """An attacker without the key truncates the log (drops the append-only trigger),
    deletes the head MAC and signature rows and the head-mark/mirror files: the key
    holder's `get` serves the old value with exit 0 and no warning (only `verify`
    notices). A legitimate keyless writer never removes the MAC row (its tail is
    'unvouched'), so a keyed ledger with no MAC row is not a state to serve silently."""
    env = site_env(tmp_path)
    for port in ("2000", "3000"):
        assert cli_here(env, "set", "server.port", port).returncode == 0
    assert cli_here(env, "get", "server.port").stdout.strip() == "3000"
    truncate_last_event(tmp_path / "data" / "moltis.db", MAC_ROWS)
    drop_marks(tmp_path)
    got = cli_process(env, "get", "server.port")
    assert got.returncode == 3, (got.returncode, got.stdout, got.stderr)
    assert "2000" not in got.stdout
    for fix in ("no head MAC row", "moltis-ledger verify", "sign-head --adopt", "restore"):
        assert fix in got.stderr, got.stderr
    # the operator's way out still runs: verify reports it, sign-head --adopt refuses
    # (verify fails on the rolled-back log), restore is not refused by the check
    assert cli_here(env, "verify").returncode == 3


def test_keyed_ledger_without_mac_row_is_accepted_again_after_adopt(tmp_path: Path) -> None:
    """A keyed ledger with no MAC row (nor signature) but an intact log (as one that got
    its key after its first events): refused; `sign-head --adopt` (it runs verify)
    vouches for it, and `get` serves it again. A ledger signed the old way (signature,
    no MAC) is served: tests/test_head_vouch.py."""
    import apsw

    env = site_env(tmp_path)
    assert cli_here(env, "set", "server.port", "2000").returncode == 0
    con = apsw.Connection(str(tmp_path / "data" / "moltis.db"))
    con.execute("DELETE FROM ledger_meta WHERE key IN ('head_mac', 'head_signature')")
    con.close()
    refused = cli_process(env, "get", "server.port")
    assert refused.returncode == 3, (refused.stdout, refused.stderr)
    adopted = cli_here(env, "sign-head", "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    got = cli_process(env, "get", "server.port")
    assert (got.returncode, got.stdout.strip(), got.stderr) == (0, "2000", "")


KEYLESS_WRITE = """
import sys
from ledger.core.keypaths import parse_path
from ledger.ops.open_store import open_ledger
store = open_ledger(sys.argv[1])
store.ledger.edit({parse_path("server.port"): 6666}, actor="mallory")
store.ledger.close()
"""


def test_keyed_get_warns_when_it_serves_a_tail_written_without_the_key(
        tmp_path: Path) -> None:
    """Someone without the key (any process that can write the database) appends a
    change; the head MAC row still vouches for the event before it. docs/cli.md says
    such a head 'is served with the warning', and `verify` exits 3 on it; the key
    holder's `get` (and the library's open_store().load_raw(), the gateway's read)
    serve it with exit 0 and print nothing on stderr."""
    env = site_env(tmp_path)
    assert cli_here(env, "set", "server.port", "2000").returncode == 0
    keyless = {k: v for k, v in env.items() if k != "MOLTIS_LEDGER_KEY"}
    forged = subprocess.run([sys.executable, "-c", KEYLESS_WRITE,
                             str(tmp_path / "data" / "moltis.db")], env=keyless,
                            capture_output=True, text=True, timeout=120, check=False)
    assert forged.returncode == 0, forged.stderr
    assert cli_here(env, "verify").returncode == 3  # verify does not vouch for it
    got = cli_process(env, "get", "server.port")
    # a writer without the key is allowed: served, with the warning naming the fix
    assert (got.returncode, got.stdout.strip()) == (0, "6666"), got.stderr
    for said in ("1 event ", "moltis-ledger log", "sign-head --adopt"):
        assert said in got.stderr, got.stderr
    # the fast `get` (no click) and click's print the same warning, byte for byte
    by_click = subprocess.run(
        [sys.executable, "-c", "import sys; from ledger.cli import app; "
         "sys.exit(app.run(['get', 'server.port']))"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    by_fast = subprocess.run(
        [sys.executable, "-c", "import sys; from ledger.cli import fast; "
         "sys.exit(fast.run_fast(['get', 'server.port']))"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    def untimed(proc: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
        return proc.returncode, proc.stdout, re.sub(r"^\d\d:\d\d:\d\d ", "", proc.stderr,
                                                    flags=re.MULTILINE)

    assert untimed(by_fast) == untimed(by_click) == untimed(got)
    # the gateway's read logs it too
    lib = subprocess.run([sys.executable, "-c", GATEWAY_READ], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert lib.returncode == 0, lib.stderr
    assert "WARNING ledger.engine.ledger" in lib.stdout and "sign-head --adopt" in lib.stdout
    # once vouched for, nothing more is said
    assert cli_here(env, "sign-head", "--adopt").returncode == 0
    again = cli_process(env, "get", "server.port")
    assert (again.returncode, again.stdout.strip(), again.stderr) == (0, "6666", "")


GATEWAY_READ = """
import asyncio, logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.WARNING,
                    format="%(levelname)s %(name)s %(message)s")
from ledger.ops.open_store import open_store
print(asyncio.run(open_store().load_raw()).server.port)
"""


def test_the_gateway_serves_the_mirror_or_refuses_a_keyed_log_without_mac_row(
        tmp_path: Path) -> None:
    """The gateway's open of a rolled-back log whose MAC row was deleted falls back as for
    the other refusals: the MAC'd head mirror (it proves the newest state), or refuse."""
    env = site_env(tmp_path)
    for port in ("2000", "3000"):
        assert cli_here(env, "set", "server.port", port).returncode == 0
    truncate_last_event(tmp_path / "data" / "moltis.db", MAC_ROWS)
    drop_marks(tmp_path, "config")  # the mirror in data/ is kept: it vouches for 3000
    served = subprocess.run([sys.executable, "-c", GATEWAY_READ], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert (served.returncode, served.stdout.splitlines()[-1:]) == (0, ["3000"]), served
    for mirror in tmp_path.glob("data/ledger-head*"):
        mirror.unlink()
    refused = subprocess.run([sys.executable, "-c", GATEWAY_READ], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0 and "no head MAC row" in refused.stderr, refused
    assert "2000" not in refused.stdout
