"""Issue 14 acceptance, secrets inside arrays and URL userinfo in typed fields: the
leak scan. MCP `args` with a secret after a flag, in `--name=value` and in a Bearer
header; a `[[hooks.hooks]]` entry's env token; a password in `mcp.servers.*.url` and
in `providers.*.base_url`: none of them in the database, its WAL and SHM, a bundle, a
masked export, the logs at every verbosity, any command's human or `--json` output,
while the gateway and `export --reveal-secrets` still get every value."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ledger.cli.app import run
from tests.conftest import run as arun
from tests.leak_scan import assert_clean, cli_text, scan_commands, scan_exports_and_files

LEAKS = {
    "arg": "sk-LEAKARR-arg-31c7",
    "eq": "tok-LEAKARR-eq-8d20",
    "bearer": "brr-LEAKARR-hdr-55e1",
    "hook": "hook-LEAKARR-env-a9f3",
    "url": "LEAKARRurlpw7b1d",
    "base": "LEAKARRbasepw02ce",
}
ARGS = ["--api-key", LEAKS["arg"], f"--token={LEAKS['eq']}", "-H",
        f"Authorization: Bearer {LEAKS['bearer']}", "--stdio"]
URL = f"https://bot:{LEAKS['url']}@mcp.example/sse"
BASE = f"https://proxy:{LEAKS['base']}@llm.example/v1"
HOOKS = [{"name": "audit", "command": "./audit.sh", "events": ["SessionStart"],
          "env": {"API_TOKEN": LEAKS["hook"]}}]

COMMANDS: list[tuple[str, ...]] = [
    ("show",), ("show", "--effective"), ("get", "mcp.servers.gh.args"),
    ("get", "mcp.servers.gh.args", "--effective"), ("get", "mcp.servers.gh.url"),
    ("get", "mcp.servers.gh.url", "--effective"), ("get", "hooks", "--effective"),
    ("get", "hooks.hooks"), ("get", "providers.openai.base_url", "--effective"),
    ("get", "mcp", "--effective"), ("log",), ("log", "--limit", "50"), ("blame",),
    ("blame", "mcp"), ("diff", "0"), ("diff", "1"), ("export",),
    ("export", "--format", "json"), ("providers", "list"), ("providers", "effective"),
    ("check",), ("verify",), ("watch", "--after", "0", "--count", "2"),
    ("rollback", "--to", "1", "--dry-run"),
]


def _cli(capsys, *args: str) -> str:
    return cli_text(capsys, *args)


def _assert_clean(blob: str | bytes, where: str) -> None:
    assert_clean(blob, where, LEAKS)


def _db() -> Path:
    return Path(os.environ["MOLTIS_DATA_DIR"]) / "moltis.db"


def test_no_secret_in_an_array_or_url_reaches_disk_logs_or_output(capsys, caplog,
                                                                  tmp_path: Path) -> None:
    from ledger.ops.open_store import open_ledger

    assert run(["set", "server.port", "8080"]) == 0
    store = open_ledger(str(_db()))
    arun(store.edit({("mcp", "servers", "gh", "command"): "gh-mcp",
                     ("mcp", "servers", "gh", "transport"): "sse",
                     ("mcp", "servers", "gh", "args"): ARGS,
                     ("mcp", "servers", "gh", "url"): URL,
                     ("providers", "openai", "base_url"): BASE,
                     ("hooks", "hooks"): HOOKS}, reason="integrations"))
    arun(store.close())
    scan_commands(capsys, caplog, COMMANDS, LEAKS)
    shown = _cli(capsys, "get", "mcp.servers.gh.args")
    assert "<secret fp:" in shown and "--api-key" in shown and "--stdio" in shown
    shown = _cli(capsys, "show", "--effective")
    assert "--stdio" in shown and "mcp.example" not in shown  # the whole URL is masked

    scan_exports_and_files(capsys, tmp_path, _db().parent, LEAKS)
    # the head mirror holds references and sealed values, never the plaintext
    for path in _db().parent.glob("ledger-head*.json"):
        _assert_clean(path.read_bytes(), str(path))

    # export --reveal-secrets writes the plain values, as Moltis reads them
    revealed = tmp_path / "revealed"
    assert run(["export", "-o", str(revealed), "--reveal-secrets"]) == 0
    text = (revealed / "moltis.toml").read_text()
    assert all(value in text for value in LEAKS.values())
    import tomllib

    doc = tomllib.loads(text)
    assert doc["mcp"]["servers"]["gh"]["args"] == ARGS
    assert doc["hooks"]["hooks"][0]["env"] == HOOKS[0]["env"]

    # and the gateway gets every value
    store = open_ledger(str(_db()))
    eff = arun(store.load_effective(env={}))
    assert eff.mcp.servers["gh"].args == ARGS
    assert eff.mcp.servers["gh"].url == URL
    assert eff.providers.entries["openai"].base_url == BASE
    assert eff.hooks is not None and eff.hooks.hooks[0].env == HOOKS[0]["env"]
    arun(store.close())


def test_shred_by_fingerprint_from_the_cli_reaches_list_elements(capsys) -> None:
    from ledger.ops.open_store import open_ledger

    assert run(["set", "server.port", "8080"]) == 0
    store = open_ledger(str(_db()))
    arun(store.edit({("mcp", "servers", "gh", "command"): "gh-mcp",
                     ("mcp", "servers", "gh", "args"): ARGS}))
    arun(store.close())
    capsys.readouterr()
    assert run(["--json", "get", "mcp.servers.gh.args"]) == 0
    shown = json.loads(capsys.readouterr().out)
    shown = shown.get("value", shown) if isinstance(shown, dict) else shown
    fp = shown[1].removeprefix("<secret fp:").removesuffix(">")
    assert run(["shred", "--fingerprint", fp, "--yes", "--reason", "leaked"]) == 0
    assert run(["shred", "--path", "mcp.servers.gh.args", "--yes", "--reason", "all"]) == 0
    capsys.readouterr()
    assert run(["get", "mcp.servers.gh.args"]) == 0
    out = capsys.readouterr().out
    assert out.count("<secret destroyed fp:") == 3
    assert run(["verify"]) == 0


MIGRATE_TOML = f"""\
[server]
port = 13131

[mcp.servers.gh]
command = "gh-mcp"
args = {json.dumps(ARGS)}
url = "{URL}"

[[hooks.hooks]]
name = "audit"
command = "./audit.sh"
events = ["SessionStart"]
env = {{ API_TOKEN = "{LEAKS['hook']}" }}
"""


def test_migration_backup_and_ledger_backup_hold_no_list_secret_in_clear(tmp_path: Path
                                                                         ) -> None:
    """A moltis.toml whose only secrets are inside arrays and a URL is secret-bearing:
    its migration backup is sealed; the imported ledger and a `backup` of it hold the
    values sealed; a hand edit of the list is imported (as an event) sealed too."""
    from tests.operator import make_site

    site = make_site(tmp_path, keys=False)
    site.toml.write_text(MIGRATE_TOML, encoding="utf-8")
    site.ok("migrate")
    backups = [p for p in (site.data_dir / "backups").rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sealed") for p in backups), backups
    for path in backups:
        _assert_clean(path.read_bytes(), str(path))
    out = tmp_path / "ledger.backup"
    site.ok("backup", "-o", str(out))
    _assert_clean(out.read_bytes(), "backup")
    for path in site.data_dir.glob("moltis.db*"):
        _assert_clean(path.read_bytes(), str(path))
    import asyncio

    from ledger.ops.open_store import open_store

    async def gateway() -> object:
        store = open_store()
        try:
            return await store.load_effective(env={})
        finally:
            await store.close()

    cfg = asyncio.run(gateway())
    assert cfg.mcp.servers["gh"].args == ARGS  # type: ignore[attr-defined]
    assert cfg.hooks.hooks[0].env["API_TOKEN"] == LEAKS["hook"]  # type: ignore[attr-defined]
    site.ok("verify")
