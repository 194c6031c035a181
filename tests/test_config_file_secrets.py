"""The live config file keeps no secret in clear once the ledger holds it sealed (review
A round 2, finding 9; issue 14).

After `migrate` / `switch-backend` to a ledger / the gateway's first start, each secret
value of moltis.toml (or moltis.yaml / moltis.json) that the ledger holds sealed is
replaced in place by its mask `<secret fp:…>` (comments and layout kept); the original
is sealed in the migration backup; `--keep-files` opts out. The stripped file is the
baseline of the hand-edit check: the masks import as "unchanged", never as unsets, and
a secret typed back in by hand is imported sealed and masked again. The gateway never
serves the imported file, so what it is given does not change.

Real files, the real CLI in process (one real process for `shred`'s grep), no mocks."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ledger.ops.open_store import open_store
from ledger.ops.switch import prove_same
from ledger.stores.file_providers import FileProviderStore
from ledger.stores.file_store import FileConfigStore
from ledger.stores.ledger_store import LedgerConfigStore
from tests.operator import Site, make_site

# fixed random-looking test values (never real keys)
API_KEY = "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1w"
BOT_TOKEN = "123456:ABCdefGhIJKlmnoPQRstuVWxyz0123"
NEW_KEY = "sk-Zz9yXw8vUt7sRq6pOn5mLk4jIh3g"

TOML = f"""\
# the gateway of the team (hand-written)
[server]
port = 13131  # the public port

[providers.openai]
# the key from the dashboard
api_key = "{API_KEY}"  # production
base_url = "https://api.openai.com/v1"

[channels.telegram.main]
token = "{BOT_TOKEN}"
"""


def site_with(tmp_path: Path, text: str = TOML, name: str = "moltis.toml") -> Site:
    site = make_site(tmp_path, keys=False)
    site.toml.unlink()
    (site.config_dir / name).write_text(text, encoding="utf-8")
    (site.config_dir / name).chmod(0o600)
    return site


def holders(site: Site, *secrets: str) -> list[str]:
    """Every file under the config and data dirs holding one of `secrets` in clear."""
    return sorted(f"{p}: {s}" for root in (site.config_dir, site.data_dir)
                  for p in root.rglob("*") if p.is_file()
                  for s in secrets if s.encode() in p.read_bytes())


def api_key(site: Site) -> str:
    """The provider key the gateway is given (open_store(), as Moltis opens it)."""
    async def read() -> str:
        store = open_store(config_dir=site.config_dir, data_dir=site.data_dir, read_only=True)
        try:
            cfg = await store.load_effective()
            return cfg.providers["openai"].api_key.reveal()  # type: ignore[union-attr,no-any-return]
        finally:
            await store.close()

    return asyncio.run(read())


def test_migrate_masks_the_secrets_of_moltis_toml_keeping_comments(tmp_path: Path) -> None:
    site = site_with(tmp_path)
    out = site.ok("migrate").out
    text = site.toml.read_text(encoding="utf-8")
    assert holders(site, API_KEY, BOT_TOKEN) == []
    assert "took 2 secret value(s) out of" in out
    fp = site.ok("--json", "get", "providers.openai.api_key").json()
    assert 'api_key = "<secret fp:' in text and "# production" in text
    assert "# the key from the dashboard" in text and "# the public port" in text
    assert 'base_url = "https://api.openai.com/v1"' in text  # not a secret: kept
    assert "<secret fp:" in str(fp)
    # the original is in the sealed backup, and opens with the key
    backup = next((site.data_dir / "backups").glob("migrate-*"))
    opened = site.ok("unseal-backup", str(backup), "-o", str(tmp_path / "opened"))
    assert opened.code == 0
    assert API_KEY in (tmp_path / "opened" / "moltis.toml").read_text(encoding="utf-8")
    # running it again: nothing imported, the masks are no change
    again = site.ok("--json", "migrate").json()
    assert again["appended"] is False and again["changes"] == []


def test_the_gateway_gets_what_it_got_before_the_file_was_stripped(tmp_path: Path) -> None:
    site = site_with(tmp_path)
    original = tmp_path / "original"
    original.mkdir()
    shutil.copy(site.toml, original / "moltis.toml")
    site.ok("migrate")
    assert API_KEY not in site.toml.read_text(encoding="utf-8")

    async def compare() -> list[str]:
        old = FileConfigStore(original / "moltis.toml", read_only=True)
        old_providers = FileProviderStore(original / "provider_keys.json", config_store=old,
                                          read_only=True)
        new = open_store(config_dir=site.config_dir, data_dir=site.data_dir)
        try:
            assert isinstance(new, LedgerConfigStore)
            cfg = await new.load_effective()
            assert cfg.providers["openai"].api_key.reveal() == API_KEY  # type: ignore[union-attr]
            return await prove_same(old, old_providers, new, new.providers)
        finally:
            await new.close()

    assert asyncio.run(compare())  # raises VerificationError on any difference


def test_after_migrate_and_shred_no_file_holds_the_secret(tmp_path: Path) -> None:
    """The review's reproduction, with the real CLI in a real process."""
    site = site_with(tmp_path)
    env = {"MOLTIS_CONFIG_DIR": str(site.config_dir), "MOLTIS_DATA_DIR": str(site.data_dir)}

    def cli(*args: str) -> None:
        result = subprocess.run([sys.executable, "-m", "ledger", *args], check=False,
                                env={**os.environ, **env}, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, (args, result.stdout, result.stderr)

    cli("migrate")
    cli("shred", "--path", "providers.openai.api_key", "--yes")
    assert holders(site, API_KEY, BOT_TOKEN) == []


def test_first_start_through_open_store_masks_the_file(tmp_path: Path) -> None:
    site = site_with(tmp_path, TOML + '\n[config]\nbackend = "sqlite"\n')

    async def start() -> None:
        store = open_store(config_dir=site.config_dir, data_dir=site.data_dir)
        try:
            assert isinstance(store, LedgerConfigStore)
            cfg = await store.load_effective()
            assert cfg.providers["openai"].api_key.reveal() == API_KEY  # type: ignore[union-attr]
        finally:
            await store.close()

    asyncio.run(start())
    assert holders(site, API_KEY, BOT_TOKEN) == []
    assert "# the key from the dashboard" in site.toml.read_text(encoding="utf-8")
    asyncio.run(start())  # the second start imports nothing from the masks
    events = site.ok("log", "--json").json()["events"]
    assert [e["source"] for e in events] == ["import"], events


def test_hand_edits_after_the_strip(tmp_path: Path) -> None:
    """The masks are the baseline: a hand edit elsewhere imports only itself (no unset of
    a secret); a secret typed back in is imported sealed and masked in the file again."""
    site = site_with(tmp_path)
    site.ok("migrate")
    site.edit("port = 13131", "port = 13132")
    event = site.ok("log", "--limit", "1", "--json").json()["events"][0]
    assert event["source"] == "file"
    assert [(c["op"], c["path"]) for c in event["changes"]] == [("set", "server.port")]
    assert api_key(site) == API_KEY

    text = site.toml.read_text(encoding="utf-8")
    start = text.index('api_key = "') + len('api_key = "')
    site.edit(text[start:text.index('"', start)], NEW_KEY)
    assert NEW_KEY in site.toml.read_text(encoding="utf-8")
    site.ok("get", "server.port")  # any command imports the hand edit
    assert api_key(site) == NEW_KEY
    assert holders(site, API_KEY, BOT_TOKEN, NEW_KEY) == []
    assert "# production" in site.toml.read_text(encoding="utf-8")
    count = len(site.ok("log", "--json").json()["events"])
    site.ok("get", "server.port")
    assert len(site.ok("log", "--json").json()["events"]) == count  # nothing more


def test_keep_files_keeps_the_config_file_as_the_operator_wrote_it(tmp_path: Path) -> None:
    site = site_with(tmp_path)
    out = site.ok("migrate", "--keep-files").out
    assert "took" not in out
    text = site.toml.read_text(encoding="utf-8")
    assert API_KEY in text and BOT_TOKEN in text and "<secret" not in text
    # a secret typed in by hand is imported (sealed), the file kept as the operator keeps it
    site.edit(API_KEY, NEW_KEY)
    site.ok("get", "server.port")
    assert api_key(site) == NEW_KEY
    assert NEW_KEY in site.toml.read_text(encoding="utf-8")


def test_a_yaml_config_file_is_masked_keeping_comments(tmp_path: Path) -> None:
    yaml = (f"# hand-written\nserver:\n  port: 13131  # public\nproviders:\n  openai:\n"
            f"    api_key: {API_KEY}  # production\n")
    site = site_with(tmp_path, yaml, "moltis.yaml")
    site.ok("migrate")
    text = (site.config_dir / "moltis.yaml").read_text(encoding="utf-8")
    assert holders(site, API_KEY) == [] and "# production" in text and "# public" in text
    assert api_key(site) == API_KEY


def test_a_json_config_file_is_masked(tmp_path: Path) -> None:
    doc = {"server": {"port": 13131}, "channels": {"telegram": {"main": {"token": BOT_TOKEN}}}}
    site = site_with(tmp_path, json.dumps(doc), "moltis.json")
    site.ok("migrate")
    stripped = json.loads((site.config_dir / "moltis.json").read_text(encoding="utf-8"))
    assert holders(site, BOT_TOKEN) == []
    assert stripped["channels"]["telegram"]["main"]["token"].startswith("<secret fp:")
    assert stripped["server"] == {"port": 13131}


def test_switch_backend_to_the_ledger_masks_the_file(tmp_path: Path) -> None:
    site = site_with(tmp_path)
    result = site.ok("--json", "switch-backend", "sqlite").json()
    assert any("secret value(s) out of" in line for line in result["written"])
    assert holders(site, API_KEY, BOT_TOKEN) == []
    # again: the gateway already runs on that ledger, so nothing is switched or written
    again = site.ok("--json", "switch-backend", "sqlite").json()
    assert again["written"] == [] and api_key(site) == API_KEY
    # the gateway put on the masked file by hand: the masks are the secrets the ledger
    # holds, so making the ledger equal the file changes nothing, proven same
    site.edit('backend = "sqlite"', 'backend = "file"')
    back = site.ok("--json", "switch-backend", "sqlite").json()
    assert back["checked"] and api_key(site) == API_KEY


def test_secrets_in_arrays_and_url_userinfo_are_masked_and_stay_sealed(tmp_path: Path) -> None:
    """A secret element of an array is masked in place (the array keeps its shape and
    comment); a hand edit of another element keeps the sealed one. A URL with a token
    as its user (typed field) is masked whole."""
    url = "https://ghp_Zq8xW3vN5tR7yK2mP4sL6Tb9:@api.example/v1"
    site = site_with(tmp_path, f"""\
[providers.openai]
base_url = "{url}"

[mcp.servers.gh]
command = "gh-mcp"
args = ["--api-key", "{API_KEY}", "--verbose"]  # keep
""")
    site.ok("migrate")
    text = site.toml.read_text(encoding="utf-8")
    assert holders(site, API_KEY, "ghp_Zq8xW3vN5tR7yK2mP4sL6Tb9") == []
    assert 'args = ["--api-key", "<secret fp:' in text and '"--verbose"]  # keep' in text
    site.edit('"--verbose"', '"--quiet"')
    site.ok("log", "--limit", "1")  # any command imports the hand edit

    async def read() -> tuple[list[str], str]:
        store = open_store(config_dir=site.config_dir, data_dir=site.data_dir, read_only=True)
        try:
            cfg = await store.load_effective()
            return list(cfg.mcp.servers["gh"].args), str(cfg.providers["openai"].base_url)
        finally:
            await store.close()

    assert asyncio.run(read()) == (["--api-key", API_KEY, "--quiet"], url)
    assert holders(site, API_KEY) == []


def test_a_stale_mask_never_replaces_the_secret_the_ledger_holds(tmp_path: Path) -> None:
    """After migrate masked the file, the key changed in the ledger: the file's mask now
    stands for the old key. Making the ledger equal the file (`switch-backend sqlite`)
    must not turn the stored key into a withheld placeholder (a gateway without its key):
    it is refused, naming the path, and nothing is written. (The gateway is put on the
    masked file by hand first: a switch onto the ledger it runs on changes nothing.)"""
    site = site_with(tmp_path)
    site.ok("migrate")
    site.ok("set", "providers.openai.api_key", NEW_KEY, "--reason", "rotate the provider key")
    head = site.ok("--json", "log", "--limit", "1").json()
    site.edit('backend = "sqlite"', 'backend = "file"')
    refused = site.run("switch-backend", "sqlite")
    assert refused.code != 0
    assert "providers.openai.api_key" in refused.err
    assert site.ok("--json", "log", "--limit", "1").json() == head  # nothing written
    site.edit('backend = "file"', 'backend = "sqlite"')
    assert api_key(site) == NEW_KEY
