"""Gaps the last closing note listed as "noticed, not fixed" (issue 16 round 3).

- a stale mask inside a list (a masked element whose fingerprint the ledger does not
  hold in that list) is refused naming the key path, as for a scalar secret;
- a writer queue file `<db>.lock` that is refused (too open, another owner, a symlink)
  is reported by `check` (and `verify`), naming the file and the fix;
- a hand edit imported by a read command refreshes the head mirror, as a write does;
- the web verify page shows the MAC'd seq in its HTML, as its JSON does.

Real files, the real CLI in process, no mocks."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from ledger.ops.open_store import open_store
from tests.operator import Site, make_site

# fixed random-looking test values (never real keys)
API_KEY = "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1w"
NEW_KEY = "sk-Zz9yXw8vUt7sRq6pOn5mLk4jIh3g"
OTHER_KEY = "sk-Qq1wEe2rTt3yUu4iOo5pAa6sDd7f"

LIST_TOML = f"""\
[server]
port = 13131

[mcp.servers.gh]
command = "gh-mcp"
args = ["--api-key", "{API_KEY}", "--verbose"]  # keep
"""


def list_site(tmp_path: Path) -> Site:
    site = make_site(tmp_path, keys=False)
    site.toml.write_text(LIST_TOML, encoding="utf-8")
    site.toml.chmod(0o600)
    return site


def gh_args(site: Site) -> list[str]:
    """The MCP args the gateway is given (open_store(), as Moltis opens it)."""
    async def read() -> list[str]:
        store = open_store(config_dir=site.config_dir, data_dir=site.data_dir, read_only=True)
        try:
            cfg = await store.load_effective()
            return [a.reveal() if hasattr(a, "reveal") else str(a)
                    for a in cfg.mcp.servers["gh"].args]
        finally:
            await store.close()

    return asyncio.run(read())


def head(site: Site) -> object:
    return site.ok("--json", "log", "--limit", "1").json()


def test_a_stale_mask_in_a_list_never_replaces_the_secret_the_ledger_holds(
        tmp_path: Path) -> None:
    """migrate masked the list's key in the file; the key then changed in the ledger.
    Making the ledger equal the file must not turn the list's live key into a withheld
    element: it is refused naming the list's path, and nothing is written."""
    site = list_site(tmp_path)
    site.ok("migrate")
    site.ok("set", "mcp.servers.gh.args", f'["--api-key", "{NEW_KEY}", "--verbose"]',
            "--reason", "rotate the MCP key")
    before = head(site)
    site.edit('backend = "sqlite"', 'backend = "file"')  # else: already there, a no-op
    refused = site.run("switch-backend", "sqlite")
    assert refused.code != 0, refused
    assert "mcp.servers.gh.args" in refused.err
    assert "placeholder" in refused.err
    assert head(site) == before  # nothing written
    site.edit('backend = "file"', 'backend = "sqlite"')
    assert gh_args(site) == ["--api-key", NEW_KEY, "--verbose"]


def test_letting_a_hand_edit_of_a_list_with_a_stale_mask_win_is_refused(
        tmp_path: Path) -> None:
    """The same when a hand edit of another element of that list is made to win
    (`migrate` after the conflict the read command reported): the stale mask must not
    withhold the key the ledger holds."""
    site = list_site(tmp_path)
    site.ok("migrate")
    site.ok("set", "mcp.servers.gh.args", f'["--api-key", "{NEW_KEY}", "--verbose"]',
            "--reason", "rotate the MCP key")
    before = head(site)
    site.edit('"--verbose"', '"--quiet"')
    conflict = site.ok("get", "server.port")  # reported, not imported: the ledger moved
    assert "mcp.servers.gh.args" in conflict.err
    refused = site.run("migrate")
    assert refused.code != 0, refused
    assert "mcp.servers.gh.args" in refused.err
    assert head(site) == before
    assert gh_args(site) == ["--api-key", NEW_KEY, "--verbose"]


def test_a_mask_the_list_holds_maps_back_wherever_it_stands(tmp_path: Path) -> None:
    """Positions shift: a held mask moved elsewhere in the list (and a new plaintext
    added beside it) keeps the secret it stands for."""
    site = list_site(tmp_path)
    site.ok("migrate")
    text = site.toml.read_text(encoding="utf-8")
    start = text.index('"<secret fp:')
    mask = text[start:text.index('"', start + 1) + 1]
    site.edit(f'["--api-key", {mask}, "--verbose"]',
              f'["--verbose", "--token", "{OTHER_KEY}", "--api-key", {mask}]')
    site.ok("get", "server.port")  # any command imports the hand edit
    assert gh_args(site) == ["--verbose", "--token", OTHER_KEY, "--api-key", API_KEY]


# -- a refused writer queue file is reported --------------------------------------------

def ledger_site(tmp_path: Path) -> Site:
    site = make_site(tmp_path)
    site.ok("migrate")
    site.ok("set", "server.port", "13132", "--reason", "a write opens the queue")
    assert queue_file(site).exists()
    return site


def queue_file(site: Site) -> Path:
    return Path(f"{site.db}.lock")


def assert_reported(site: Site, lock: Path) -> None:
    """`check` warns naming the file and the fix (text and --json), and `verify` notes
    it; neither fails for it (the ledger itself is sound)."""
    checked = site.ok("check")
    assert str(lock) in checked.err and "remove it" in checked.err, checked
    assert "0600" in checked.err
    doc = site.ok("--json", "check").json()
    assert any(str(lock) in w and "remove it" in w for w in doc["warnings"]), doc
    verified = site.ok("verify")
    assert str(lock) in verified.out + verified.err, verified


def test_check_warns_about_a_queue_file_open_to_others(tmp_path: Path) -> None:
    """A queue file left 0644 (by an older version, or a copy) is refused by every writer,
    which then goes without the queue: `check` says so and how to mend it; once removed,
    the next writer recreates it 0600 and the warning is gone."""
    site = ledger_site(tmp_path)
    lock = queue_file(site)
    assert not [w for w in site.ok("--json", "check").json()["warnings"] if str(lock) in w]
    lock.chmod(0o644)
    assert_reported(site, lock)
    assert "0o644" in site.ok("check").err
    lock.unlink()
    site.ok("set", "server.port", "13133", "--reason", "recreates the queue file")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert str(lock) not in site.ok("check").err


def test_check_warns_about_a_queue_file_that_is_a_symbolic_link(tmp_path: Path) -> None:
    site = ledger_site(tmp_path)
    lock = queue_file(site)
    lock.unlink()
    (tmp_path / "elsewhere").write_text("", encoding="utf-8")
    lock.symlink_to(tmp_path / "elsewhere")
    assert_reported(site, lock)
    assert "symbolic link" in site.ok("check").err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_check_warns_about_a_queue_file_of_another_user(tmp_path: Path) -> None:
    site = ledger_site(tmp_path)
    lock = queue_file(site)
    os.chown(lock, 65534, 65534)
    assert_reported(site, lock)
    assert "uid 65534" in site.ok("check").err


# -- a hand edit imported by a read command refreshes the head mirror --------------------

def mirror_seq(site: Site) -> int:
    """The newest seq the head mirror's slots hold (their bodies, as the fallback reads)."""
    seqs = [json.loads(json.loads(slot.read_text(encoding="utf-8"))["body"])["seq"]
            for slot in (site.data_dir / "ledger-head.0.json",
                         site.data_dir / "ledger-head.1.json") if slot.exists()]
    return max(seqs, default=-1)


def head_seq(site: Site) -> int:
    return int(site.ok("--json", "log", "--limit", "1").json()["events"][0]["seq"])


def test_a_hand_edit_imported_by_a_read_command_refreshes_the_head_mirror(
        tmp_path: Path) -> None:
    """The import is a write: the gateway's fallback must serve the hand edit the ledger
    now holds, not the state before it, even when no write command ever ran after it."""
    site = make_site(tmp_path)
    site.ok("migrate")
    assert mirror_seq(site) == head_seq(site)
    site.edit("port = 13131", "port = 13132")
    assert site.ok("get", "server.port").out.strip() == "13132"  # imports the hand edit
    seq = head_seq(site)
    assert seq >= 2
    assert mirror_seq(site) == seq


def test_a_masked_import_with_a_stale_list_mask_is_refused(tmp_path: Path) -> None:
    """Through the library (a masked export saved back with `save_raw`, as an import
    does): the rule lives where every import seals a list, not in one command."""
    from ledger import SqliteConfigStore
    from ledger.core.secret_refs import SecretRef
    from ledger.errors import ConfigValidationError
    from tests.conftest import run

    def doc(*args: str) -> dict[str, object]:
        return {"mcp": {"servers": {"gh": {"command": "gh-mcp", "args": list(args)}}}}

    def held() -> list[object]:
        return list(store.ledger.head_state().config["mcp"]["servers"]["gh"]["args"])

    store = SqliteConfigStore(tmp_path / "l.db")
    try:
        run(store.save_raw(doc("--api-key", API_KEY), actor="setup", source="import"))
        old = held()[1]
        assert isinstance(old, SecretRef)
        exported = doc("--api-key", old.mask())  # what a masked export holds
        run(store.save_raw(doc("--api-key", NEW_KEY), actor="ops", reason="rotate",
                           source="api"))
        seq = store.ledger.head_state().seq
        with pytest.raises(ConfigValidationError, match=r"mcp\.servers\.gh\.args") as err:
            run(store.save_raw(exported, actor="ops", source="import"))
        assert err.value.path == "mcp.servers.gh.args"
        assert API_KEY not in str(err.value) and NEW_KEY not in str(err.value)
        assert store.ledger.head_state().seq == seq  # nothing written
        # the ledger's own placeholder, moved and beside a new element, maps back
        new = held()[1]
        assert isinstance(new, SecretRef)
        run(store.save_raw(doc(new.mask(), "--api-key", "--verbose"), actor="ops",
                           source="import"))
        assert held()[0] == new
    finally:
        store.ledger.close()
