"""No silent traps (issue 15): removed keys stay removed, masked placeholders never land
where Moltis reads, a rollback never empties the ledger by surprise, failed imports
leave neither an empty ledger nor a pile of backups."""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from pathlib import Path

import pytest

from ledger.ops.open_store import open_store
from ledger.stores.ledger_store import LedgerConfigStore
from tests.operator import Site, make_site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


# ---------------------------------------------------------------------------------
# tombstones


def effective_names() -> set[str]:
    """Providers the gateway would use with a key."""
    async def read() -> set[str]:
        store = open_store()
        assert isinstance(store, LedgerConfigStore)
        try:
            found = await store.providers.effective(env={})
            return {name for name, p in found.items() if p.api_key is not None}
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_removed_provider_never_comes_back_from_the_key_file(site: Site) -> None:
    keys = site.keys.read_text()
    site.ok("migrate")
    site.keys.write_text(keys)  # still there, or put back from an old copy
    assert "anthropic" in effective_names()
    site.ok("providers", "remove", "anthropic", "--reason", "revoked")
    assert "anthropic" not in effective_names()
    got = site.ok("providers", "effective", "--json").json()
    assert "anthropic" not in got or got["anthropic"]["api_key"] is None


def test_a_provider_removed_before_the_key_file_was_imported_stays_removed(site: Site
                                                                           ) -> None:
    keys = site.keys.read_text()
    site.keys.unlink()
    site.ok("migrate")
    site.ok("providers", "set", "anthropic", "--api-key", "sk-new")
    site.ok("providers", "remove", "anthropic")
    site.keys.write_text(keys)  # the old file appears again, not imported yet
    names = effective_names()
    assert "anthropic" not in names and "openai" in names  # only never-held names fill in


# ---------------------------------------------------------------------------------
# export


def test_export_to_a_folder_needs_an_explicit_choice_about_secrets(site: Site) -> None:
    site.ok("migrate")
    target = site.root / "copy"
    refused = site.run("export", "-o", str(target))
    assert refused.code == 1 and "--reveal-secrets" in refused.err and "--masked" in refused.err
    assert not target.exists()
    site.ok("export", "-o", str(target), "--masked")
    assert "<secret fp:" in (target / "provider_keys.json").read_text()
    site.ok("export", "-o", str(target), "--masked")  # our own masked copy: fine again


def test_a_masked_export_is_refused_into_a_live_config(site: Site) -> None:
    site.ok("migrate", "--keep-files")
    before = {p.name: p.read_bytes() for p in (site.toml, site.keys)}
    for target in (site.config_dir, site.root / "other-live"):
        if target != site.config_dir:
            target.mkdir()
            (target / "provider_keys.json").write_text('{"openai": {"apiKey": "sk-x"}}')
        result = site.run("export", "-o", str(target), "--masked")
        assert result.code == 1 and "is a live config" in result.err
    assert {p.name: p.read_bytes() for p in (site.toml, site.keys)} == before


def test_an_export_with_values_is_a_file_backend_config(site: Site) -> None:
    site.ok("migrate")
    target = site.root / "restore"
    site.ok("export", "-o", str(target), "--reveal-secrets")
    doc = tomllib.loads((target / "moltis.toml").read_text())
    assert doc["config"]["backend"] == "file"
    keys = json.loads((target / "provider_keys.json").read_text())
    assert keys["openai"]["apiKey"] == "sk-openai-operator-0002"


# ---------------------------------------------------------------------------------
# rollback


def test_a_time_before_the_first_event_is_an_error_naming_it(site: Site) -> None:
    site.ok("migrate")
    for args in (("rollback", "--to", "2001-01-01T00:00:00Z"),
                 ("rollback", "--to", "2001-01-01T00:00:00Z", "--dry-run"),
                 ("show", "--at", "2001-01-01T00:00:00Z")):
        result = site.run(*args)
        assert result.code == 1, args
        assert "before the first event (seq 1 at" in result.err
    assert site.ok("log", "--json").json()["head_seq"] == 1
    # a range bound before the first event still means "from the start"
    assert len(site.ok("log", "--since", "2001-01-01T00:00:00Z", "--json").json()["events"]) == 1


def test_seq_0_only_by_name(site: Site) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    result = site.run("rollback", "--to", "-2", "--yes")
    assert result.code == 1 and "--to 0" in result.err
    assert site.ok("log", "--json").json()["head_seq"] == 2
    site.ok("rollback", "--to", "0", "--yes")
    assert site.run("get", "server.port").code == 1


def test_a_rollback_removing_many_paths_asks_first(site: Site) -> None:
    site.ok("migrate")
    result = site.run("rollback", "--to", "0")  # not a terminal, no --yes
    assert result.code == 1 and "--yes" in result.err and "removes" in result.err
    assert site.ok("log", "--json").json()["head_seq"] == 1
    assert site.ok("rollback", "--to", "0", "--dry-run").code == 0  # a preview never asks
    # a small rollback does not ask
    site.ok("set", "server.port", "8080")
    site.ok("rollback", "--to", "1")
    assert site.ok("get", "server.port").out.strip() == "13131"


# ---------------------------------------------------------------------------------
# failed imports


def test_a_failed_migrate_leaves_no_empty_ledger(site: Site) -> None:
    site.edit("port = 13131", 'port = "abc"')
    result = site.run("migrate")
    assert result.code == 1 and "server.port" in result.err
    assert not site.db.exists()
    assert not list(site.data_dir.glob("moltis.db*"))
    check = site.run("check")
    assert check.code == 1 and "ok" not in check.out


def test_failed_boots_do_not_pile_up_backups(site: Site) -> None:
    # (mode = 5: Moltis types it as a String, so any text loads but a number does not)
    site.edit("[server]", '[server]\nbackend_of_nothing = 1\n[tools.exec.sandbox]\nmode = 5\n'
                          "[server.x]")
    os.environ["MOLTIS_CONFIG_BACKEND"] = "sqlite"
    try:
        for _ in range(3):
            store = open_store()
            assert store.backend_name == "file"  # the import failed: fallback
            asyncio.run(store.close())
    finally:
        del os.environ["MOLTIS_CONFIG_BACKEND"]
    backups = list((site.data_dir / "backups").glob("migrate-*"))
    assert len(backups) <= 1
    assert not site.db.exists()
