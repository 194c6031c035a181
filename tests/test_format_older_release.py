"""A real older release against a ledger this release wrote: the code of main at 8b561be
(format 1 only, before the version was raised), taken from the repository's history and
run in its own process. It opens a ledger that never held a secret inside a list, and
refuses, with a clear message and exit 1, one whose list holds a sealed element (format
2) instead of reading it (a release older still, before issue 14, would hand the gateway
`{"$secret": …}` tables in those lists; they all share the same refusal rule). The
gateway's entry point of the older release refuses too, instead of falling back to the
head mirror (a mirror holding secrets inside lists says v2, which it does not read)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ledger import SqliteConfigStore
from tests.conftest import run

OLDER = "8b561be"  # main before the format version was raised
REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-OLDER-release-list-0001"


@pytest.fixture(scope="module")
def older(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The older release's packages, extracted from git history (nothing installed)."""
    try:
        found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{OLDER}^{{commit}}"],
                               capture_output=True, check=False)
    except FileNotFoundError:
        pytest.skip("git is not installed: the older release comes from the history")
    if found.returncode != 0:
        pytest.skip(f"commit {OLDER} is not in this clone (shallow?): fetch the history")
    data = subprocess.run(["git", "-C", str(REPO), "archive", OLDER, "ledger", "projections"],
                          capture_output=True, check=True).stdout
    root = tmp_path_factory.mktemp("older-release")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(root, filter="data")
    return root


def older_cli(older: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(older)}
    # cwd outside the repository: `python -m` puts the cwd first on sys.path
    return subprocess.run([sys.executable, "-m", "ledger", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_older_release_is_the_older_code(older: Path, tmp_path: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import ledger.backends.base as b; print(b.__file__, "
         "b.FORMAT_VERSION)"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(older)},
        capture_output=True, text=True, check=True, timeout=60)
    where, understands = probe.stdout.split()
    assert Path(where).is_relative_to(older) and understands == "1"


def test_the_older_release_refuses_a_ledger_once_a_list_holds_a_secret(
        older: Path, tmp_path: Path) -> None:
    db = tmp_path / "moltis.db"
    store = SqliteConfigStore(db)
    run(store.edit({("server", "port"): 8111}, reason="plain"))
    run(store.providers.set("openai", api_key="sk-a-plain-secret-leaf-0002"))
    store.ledger.close()
    # never held a sealed list element: the older release reads and writes it
    shown = older_cli(older, tmp_path, "--db", str(db), "--json", "show")
    assert shown.returncode == 0, shown.stderr
    assert '"port": 8111' in shown.stdout
    wrote = older_cli(older, tmp_path, "--db", str(db), "set", "server.port", "8112",
                      "--reason", "the older release writes too")
    assert wrote.returncode == 0, wrote.stderr

    store = SqliteConfigStore(db)
    run(store.edit({("mcp", "servers", "gh", "command"): "gh-mcp",
                    ("mcp", "servers", "gh", "args"): ["--api-key", SECRET]},
                   reason="a key in an MCP server's args"))
    head = store.ledger.backend.head()
    store.ledger.close()
    for args in (["--json", "show"], ["set", "server.port", "8113", "--reason", "downgraded"]):
        refused = older_cli(older, tmp_path, "--db", str(db), *args)
        said = refused.stdout + refused.stderr  # --json puts the error on stdout
        assert refused.returncode == 1, (args, refused)
        assert "the ledger was written by a newer version (format 2; this version " \
               "understands up to 1). Upgrade moltis-config-ledger" in said
        assert "Traceback" not in said and SECRET not in said and "$secret" not in said
    # nothing was written by the refused older release; this release reads on
    store = SqliteConfigStore(db, read_only=True)
    assert store.ledger.backend.head() == head
    gateway = run(store.load_effective(env={}))
    assert gateway.mcp.servers["gh"].args == ["--api-key", SECRET]
    assert gateway.server.port == 8112
    store.ledger.close()


GATEWAY = ("from ledger.compat import discover_and_load\n"
           "cfg = discover_and_load()\n"
           "print('served', cfg.server.port, cfg.mcp.servers.get('gh'))\n")


def older_gateway(older: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(older)}
    return subprocess.run([sys.executable, "-c", GATEWAY], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_older_gateway_refuses_instead_of_serving_the_mirror(older: Path,
                                                                 tmp_path: Path) -> None:
    from ledger.ops.open_store import open_store

    config = Path(os.environ["MOLTIS_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "moltis.toml").write_text('[server]\nport = 8111\n\n[config]\nbackend = "sqlite"\n',
                                        encoding="utf-8")
    (config / "moltis.toml").chmod(0o600)
    store = open_store()  # the gateway's own open: the first import, the head mirror
    store.ledger.close()
    served = older_gateway(older, tmp_path)
    assert served.returncode == 0, served.stderr
    assert "served 8111 None" in served.stdout

    store = open_store()
    run(store.edit({("mcp", "servers", "gh", "command"): "gh-mcp",
                    ("mcp", "servers", "gh", "args"): ["--api-key", SECRET]},
                   reason="a key in an MCP server's args"))
    store.ledger.close()
    refused = older_gateway(older, tmp_path)
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1 and "served" not in refused.stdout, said
    assert "written by a newer version (format 2" in said
    assert "no head mirror proves its state" in said
    assert SECRET not in said and "$secret" not in said
