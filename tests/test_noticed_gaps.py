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
from pathlib import Path

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
    refused = site.run("switch-backend", "sqlite")
    assert refused.code != 0, refused
    assert "mcp.servers.gh.args" in refused.err
    assert "placeholder" in refused.err
    assert head(site) == before  # nothing written
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
