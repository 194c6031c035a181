"""Hardening of the "one truth" work (review findings, issue 15 follow-up): a bad hand
edit keeps a healthy ledger writable, export never writes into the live config dir,
and the fallback never serves the pre-import file once it names a ledger. Real SQLite
files and the real CLI; no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from ledger.errors import BackendUnavailableError
from ledger.ops.mirror import MIRROR_NAME, slot_paths
from ledger.ops.open_store import open_store
from ledger.stores.ledger_store import LedgerConfigStore
from tests.operator import KEYS, Site, make_site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


def _break_ledger(site: Site) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{site.db}{suffix}").unlink(missing_ok=True)
    site.db.write_bytes(b"this is not a database any more" * 100)


async def _served() -> tuple[str, int, str | None]:
    store = open_store()
    try:
        cfg = await store.load_effective()
        return store.backend_name, cfg.server.port, getattr(store, "read_only_reason", None)
    finally:
        await store.close()


# -- 8: a bad value in a hand edit ----------------------------------------------------


def test_invalid_hand_edit_keeps_the_ledger_writable(site: Site) -> None:
    site.ok("migrate")
    site.edit("port = 13131", 'port = "not-a-port"')

    async def write() -> str:
        store = open_store()
        try:
            await store.edit({("identity", "name"): "Nova"}, actor="ui", reason="rename")
            return store.backend_name
        finally:
            await store.close()

    assert asyncio.run(write()) == "sqlite"
    assert asyncio.run(_served())[1] == 13131  # the bad value was not imported
    check = site.run("check")
    said = check.out + check.err
    assert "server.port" in said and "not imported" in said, check


# -- 6: export into the live config dir -------------------------------------------------


@pytest.mark.parametrize("mode", ["--reveal-secrets", "--masked"])
def test_export_into_the_live_config_dir_is_refused(site: Site, mode: str) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    before = site.toml.read_bytes()
    result = site.run("export", "--at", "1", mode, "-o", str(site.config_dir))
    assert result.code != 0
    assert "switch-backend file" in (result.out + result.err)
    assert site.toml.read_bytes() == before
    assert not site.keys.exists()
    assert asyncio.run(_served())[:2] == ("sqlite", 8080)


# -- 3: no mirror, the ledger unreadable ------------------------------------------------


def test_no_mirror_never_serves_the_pre_import_file(site: Site) -> None:
    """The file says it was imported into the ledger; with the ledger unreadable and no
    mirror, open_store() refuses loudly instead of serving the pre-import state."""
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    for slot in slot_paths(site.data_dir / MIRROR_NAME):
        slot.unlink(missing_ok=True)
    _break_ledger(site)
    with pytest.raises(BackendUnavailableError) as caught:
        asyncio.run(_served())
    message = str(caught.value)
    assert str(site.toml) in message and str(site.db) in message
    assert 'backend = "file"' in message  # the deliberate way back to the file


def test_hand_switched_file_without_a_ledger_still_falls_back_to_the_file(site: Site
                                                                           ) -> None:
    """A file switched by hand whose first import fails (no ledger was created) was
    never imported: it stays what the gateway serves, read-only."""
    site.edit("[server]", '[config]\nbackend = "sqlite"\n\n[server]')
    site.data_dir.write_text("a file where the data dir should be\n")  # no ledger
    backend, port, reason = asyncio.run(_served())
    assert (backend, port) == ("file", 13131) and reason


# -- 4: the file names the ledger it was imported into ----------------------------------


def _ledger_id(site: Site) -> str:
    import sqlite3

    with contextlib.closing(sqlite3.connect(site.db)) as db:
        row = db.execute("SELECT value FROM ledger_meta WHERE key = 'ledger_id'").fetchone()
    return str(row[0])


def test_migrate_records_the_ledger_in_the_config_file(site: Site) -> None:
    site.ok("migrate")
    section = tomllib.loads(site.toml.read_text())["config"]
    assert section["backend"] == "sqlite" and section["ledger_id"] == _ledger_id(site)
    site.ok("verify")  # the recorded id is not taken for a hand edit that breaks anything


def test_a_new_data_dir_does_not_import_a_file_of_another_ledger(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    assert asyncio.run(_served())[:2] == ("sqlite", 8080)
    other = tmp_path / "other-data"
    monkeypatch.setenv("MOLTIS_DATA_DIR", str(other))
    with pytest.raises(BackendUnavailableError) as caught:
        asyncio.run(_served())
    message = str(caught.value)
    assert _ledger_id(site) in message and "MOLTIS_DATA_DIR" in message
    assert "moltis-ledger migrate" in message
    assert not (other / "moltis.db").exists()  # no fresh ledger left behind


# -- 2: the mirror never follows a link -------------------------------------------------


def test_a_symlink_at_a_mirror_slot_is_refused_naming_the_path(
        site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site.ok("migrate")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    slots = slot_paths(site.data_dir / MIRROR_NAME)
    for slot in slots:
        slot.unlink(missing_ok=True)
        slot.symlink_to(victim)
    with caplog.at_level(logging.WARNING):
        site.ok("set", "server.port", "8080")  # the commit stands
    assert victim.read_text() == "precious\n"
    logged = repr([r.__dict__ for r in caplog.records])
    assert "refusing to write the head mirror: it is a symbolic link" in logged
    assert any(str(slot) in logged for slot in slots)
    assert asyncio.run(_served())[:2] == ("sqlite", 8080)


# -- 5: migration backups are the ledger's own ------------------------------------------


def _backup_folder(site: Site) -> Path:
    folders = sorted((site.data_dir / "backups").glob("migrate-*"))
    assert folders
    return folders[-1]


def _plant(folder: Path, manifest: dict[str, Any], name: str) -> None:
    evil = b'[server]\nbind = "0.0.0.0"\nport = 6666\n'
    (folder / "planted.toml").write_bytes(evil)
    manifest["files"][name] = {"source": "x", "size": len(evil), "stored_as": "planted.toml",
                               "sealed": False, "blake3": blake3(evil).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["moltis.toml", "ledger.key.new"])
def test_from_backup_refuses_an_edited_manifest(site: Site, name: str) -> None:
    site.ok("migrate", "--keep-files")
    folder = _backup_folder(site)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "mac" in manifest
    before = site.toml.read_bytes()
    _plant(folder, manifest, name)
    result = site.run("migrate", "--from-backup", str(folder))
    assert result.code != 0, result
    assert not (site.config_dir / "ledger.key.new").exists()
    assert site.toml.read_bytes() == before


def test_from_backup_without_a_mac_restores_no_plain_file(site: Site) -> None:
    """A backup from before the manifest MAC: a plain entry cannot be proven."""
    site.ok("migrate", "--keep-files")
    folder = _backup_folder(site)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["mac"]
    _plant(folder, manifest, "moltis.toml")
    result = site.run("migrate", "--from-backup", str(folder))
    assert result.code != 0 and "no MAC" in result.err, result
    assert b"6666" not in site.toml.read_bytes()


def test_from_backup_of_the_ledgers_own_backup_still_works(site: Site) -> None:
    site.ok("migrate")
    folder = _backup_folder(site)
    out = site.ok("migrate", "--from-backup", str(folder))
    assert "restored" in out.err + out.out


# -- 9: the gateway's first-start import retires the plaintext key file -----------------


def test_the_gateways_first_start_import_retires_the_plaintext_key_file(
        site: Site, tmp_path: Path) -> None:
    site.edit("[server]", '[config]\nbackend = "sqlite"\n\n[server]')

    async def first_start() -> tuple[str, str | None]:
        store = open_store()
        try:
            assert isinstance(store, LedgerConfigStore)
            key = (await store.providers.effective()).get("openai")
            return store.backend_name, (key.api_key.reveal() if key is not None
                                        and key.api_key is not None else None)
        finally:
            await store.close()

    assert asyncio.run(first_start()) == ("sqlite", KEYS["openai"]["apiKey"])
    assert not site.keys.exists(), "plaintext provider_keys.json left beside the ledger"
    assert asyncio.run(first_start()) == ("sqlite", KEYS["openai"]["apiKey"])
    out = tmp_path / "unsealed"
    site.ok("unseal-backup", str(_backup_folder(site)), "-o", str(out))
    assert json.loads((out / "provider_keys.json").read_text()) == KEYS


def test_a_first_start_switched_only_by_the_environment_keeps_the_key_file(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `[config] backend` in the file, the next start without the variable is
    on the file store again: the key file must stay."""
    monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "sqlite")
    assert asyncio.run(_served())[0] == "sqlite"
    assert site.keys.exists()


# -- 7: shred reaches the sealed migration backups --------------------------------------


def test_shred_removes_the_value_from_the_sealed_migration_backups(site: Site,
                                                                    tmp_path: Path) -> None:
    secret = KEYS["openai"]["apiKey"]
    site.ok("migrate")  # backup: data/backups/migrate-*/provider_keys.json.sealed
    result = site.ok("shred", "--path", "keys:openai.apiKey", "--yes", "--reason", "leaked")
    said = result.out + result.err
    assert "provider_keys.json.sealed" in said and secret not in said
    out = tmp_path / "unsealed"
    for folder in sorted((site.data_dir / "backups").glob("migrate-*")):
        site.run("unseal-backup", str(folder), "-o", str(out / folder.name))
    recovered = [p for p in out.rglob("*") if p.is_file()
                 and secret in p.read_text(errors="replace")]
    assert recovered == [], "the shredded key is recoverable from a backup"
    # the other files of the backup still open (the manifest is MAC'd again)
    site.ok("unseal-backup", str(_backup_folder(site)), "-o", str(tmp_path / "again"))
    assert (tmp_path / "again" / "moltis.toml").exists()


# -- 1: a replayed mirror is refused ----------------------------------------------------


def _copy_slots(site: Site) -> dict[Path, bytes]:
    return {slot: slot.read_bytes() for slot in slot_paths(site.data_dir / MIRROR_NAME)
            if slot.exists()}


def test_a_replayed_older_mirror_is_not_served(site: Site) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    old = _copy_slots(site)
    site.ok("set", "server.port", "9090")
    site.ok("set", "server.port", "9091")  # both slots now newer than the copies
    for slot, data in old.items():
        slot.write_bytes(data)
    _break_ledger(site)
    try:
        served = asyncio.run(_served())[:2]
    except BackendUnavailableError:
        served = None  # refused loudly: fine, the stale state is not served
    assert served != ("mirror", 8080), "a replayed stale mirror was served"


def test_the_served_mirror_says_what_it_serves_and_from_when(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    _break_ledger(site)
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(_served())[:2] == ("mirror", 8080)
    logged = repr([r.__dict__ for r in caplog.records])
    assert "seq 2" in logged and "written 20" in logged, logged
