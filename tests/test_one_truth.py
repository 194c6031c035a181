"""One truth for the CLI and the gateway (issue 15): `migrate` switches the backend the
gateway's `open_store()` follows, commands on a ledger the gateway does not read say so,
`switch-backend` goes both ways and proves the result, and hand edits of moltis.toml
become audited events (or are refused when they clash with a later ledger change)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import tomllib
from pathlib import Path

import pytest

from ledger.ops.open_store import open_store
from ledger.stores.file_store import FileConfigStore
from ledger.stores.ledger_store import LedgerConfigStore
from tests.operator import KEYS, Site, make_site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


def gateway_port() -> int:
    async def read() -> int:
        store = open_store()
        try:
            return (await store.load_effective()).server.port
        finally:
            await store.close()

    return asyncio.run(read())


def test_migrate_switches_the_backend_so_the_gateway_sees_cli_changes(site: Site) -> None:
    result = site.ok("migrate")
    assert "the gateway uses from now on: the sqlite ledger at" in result.out
    text = site.toml.read_text()
    assert tomllib.loads(text)["config"]["backend"] == "sqlite"
    assert "# the gateway of the team (hand-written)" in text  # comments kept
    assert "port = 13131  # the public port" in text
    site.ok("set", "server.port", "8080")
    assert site.ok("get", "--effective", "server.port").out.strip() == "8080"
    assert gateway_port() == 8080  # what the gateway's open_store() serves
    store = open_store()
    assert isinstance(store, LedgerConfigStore)
    asyncio.run(store.close())


def test_no_switch_keeps_the_file_backend_and_every_command_says_so(site: Site) -> None:
    result = site.ok("migrate", "--no-switch", "--keep-files")
    assert "the gateway uses from now on: the file store" in result.out
    assert "config" not in tomllib.loads(site.toml.read_text())
    got = site.ok("get", "server.port")
    assert got.out.strip() == "13131"
    assert "the gateway does not read this ledger" in got.err
    assert "switch-backend sqlite" in got.err
    assert "the gateway does not read this ledger" in site.ok("log").err
    assert isinstance(open_store(), FileConfigStore)


def test_migrate_seals_secret_bearing_backups_and_retires_the_key_file(site: Site) -> None:
    originals = {p.name: p.read_bytes() for p in (site.toml, site.keys)}
    result = site.ok("migrate", "--json").json()
    backup = Path(result["backup_dir"])
    assert result["retired"] == str(backup) and not site.keys.exists()
    assert "ledger.key" in result["key"] or "MOLTIS_LEDGER_KEY" in result["key"]
    stored = {p.name: p.read_bytes() for p in backup.iterdir()}
    assert "provider_keys.json" not in stored and "provider_keys.json.sealed" in stored
    for name, data in stored.items():  # no plaintext copy of a key anywhere in it
        for entry in KEYS.values():
            assert entry["apiKey"].encode() not in data, name
    manifest = json.loads(stored["manifest.json"])
    assert manifest["files"]["provider_keys.json"]["sealed"] is True
    assert manifest["files"]["moltis.toml"]["sealed"] is False  # holds no secret
    # the documented way to read it back, with the key
    out = site.root / "unsealed"
    site.ok("unseal-backup", str(backup), "-o", str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == originals
    # without the right key it does not open
    env_key = os.environ["MOLTIS_LEDGER_KEY"]
    os.environ["MOLTIS_LEDGER_KEY"] = hashlib.blake2b(b"another key").hexdigest()[:64]
    try:
        refused = site.run("unseal-backup", str(backup), "-o", str(site.root / "x"))
    finally:
        os.environ["MOLTIS_LEDGER_KEY"] = env_key
    assert refused.code == 1 and "does not open with this ledger key" in refused.err
    # the human output says where the key is and that a restore needs it
    site.keys.write_text(json.dumps({"gemini": {"apiKey": "sk-gem-3"}}))
    text = site.ok("migrate").out
    assert "ledger key:" in text and "restoring that backup needs it" in text


def test_migrate_from_backup_puts_the_files_back_and_imports_them(site: Site) -> None:
    first = site.ok("migrate", "--json").json()
    site.toml.unlink()
    assert not site.keys.exists()
    site.ok("migrate", "--from-backup", first["backup_dir"], "--keep-files")
    assert json.loads(site.keys.read_text()) == KEYS
    assert "port = 13131" in site.toml.read_text()


def test_switch_backend_file_and_back_is_proven_both_ways(site: Site) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    site.ok("providers", "set", "gemini", "--api-key", "sk-gemini-new")
    result = site.ok("switch-backend", "file")
    assert "proven: the file store gives the same effective config" in result.out
    assert isinstance(open_store(), FileConfigStore)
    assert gateway_port() == 8080
    doc = tomllib.loads(site.toml.read_text())
    assert doc["config"]["backend"] == "file" and doc["server"]["port"] == 8080
    assert "# the public port" in site.toml.read_text()  # comments kept
    keys = json.loads(site.keys.read_text())
    assert keys["gemini"]["apiKey"] == "sk-gemini-new"  # real values, no placeholders
    assert keys["anthropic"]["apiKey"] == KEYS["anthropic"]["apiKey"]
    # operators edit the file while the gateway runs on it; then back to the ledger
    site.edit("port = 8080", "port = 8181")
    back = site.ok("switch-backend", "sqlite")
    assert "proven: the sqlite ledger at" in back.out
    assert gateway_port() == 8181
    assert isinstance(open_store(), LedgerConfigStore)
    assert not site.keys.exists()  # retired again into the sealed backup


def test_a_hand_edit_is_imported_as_an_audited_event(site: Site) -> None:
    site.ok("migrate")
    site.edit('name = "Atlas"', 'name = "Nova"')
    assert site.ok("get", "identity.name").out.strip() == "Nova"
    event = site.ok("log", "--limit", "1", "--json").json()["events"][0]
    owner = pwd.getpwuid(site.toml.stat().st_uid).pw_name
    assert event["source"] == "file" and event["actor"].startswith(owner + "@")
    assert str(site.toml) in event["reason"]
    assert [(c["op"], c["path"]) for c in event["changes"]] == [("set", "identity.name")]
    # once imported, it is not imported again
    head = site.ok("log", "--limit", "1", "--json").json()["head_seq"]
    site.ok("get", "identity.name")
    assert site.ok("log", "--limit", "1", "--json").json()["head_seq"] == head


def test_the_gateway_imports_a_hand_edit_on_open_too(site: Site) -> None:
    site.ok("migrate")
    site.edit("agent_timeout_secs = 600", "agent_timeout_secs = 700")

    async def read() -> tuple[int, str]:
        store = open_store()
        assert isinstance(store, LedgerConfigStore)
        try:
            cfg = await store.load_effective()
            last = (await store.history(limit=1))[0]
            return cfg.tools.agent_timeout_secs, last.source
        finally:
            await store.close()

    assert asyncio.run(read()) == (700, "file")


def test_a_hand_edit_that_clashes_with_a_later_ledger_change_is_refused(site: Site) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080", "--reason", "proxy")
    site.edit("port = 13131", "port = 9999")
    result = site.ok("get", "server.port")
    assert result.out.strip() == "8080"  # the ledger keeps its value
    assert "server.port (changed in the ledger at seq 2)" in result.err
    assert "edited by hand" in result.err and "Nothing was imported" in result.err
    sources = [e["source"] for e in site.ok("log", "--json").json()["events"]]
    assert "file" not in sources
    # the same file with a key the ledger did not touch is imported
    site.edit("port = 9999", "port = 8080")
    site.edit('name = "Atlas"', 'name = "Nova"')
    assert site.ok("get", "identity.name").out.strip() == "Nova"


def test_watch_imports_a_hand_edit_as_it_happens(site: Site) -> None:
    site.ok("migrate")

    async def follow() -> str:
        store = open_store()
        assert isinstance(store, LedgerConfigStore)
        events = store.watch(poll_interval=0.01)
        try:
            site.edit('bind = "127.0.0.1"', 'bind = "0.0.0.0"')
            event = await anext(events)
            return f"{event.source}:{event.changes[0].path}"
        finally:
            await events.aclose()
            await store.close()

    assert asyncio.run(follow()) == "file:('server', 'bind')"


def test_cli_and_gateway_find_and_parse_the_config_once_and_agree(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.files.dirs as dirs_module
    import ledger.ops.hand_edit as hand_edit_module
    import ledger.ops.installation as installation_module
    import ledger.ops.migrate as migrate_module

    site.ok("migrate")
    calls = {"parse": 0, "find": 0}
    parse, find = installation_module.parse_config, dirs_module.discover_config_file
    read = migrate_module.read_config

    def counting_parse(path: Path, data: bytes | None) -> object:
        calls["parse"] += 1
        return parse(path, data)

    def counting_read(path: Path) -> object:
        calls["parse"] += 1
        return read(path)

    def counting_find(*args: object, **kw: object) -> Path:
        calls["find"] += 1
        return find(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(installation_module, "parse_config", counting_parse)
    monkeypatch.setattr(migrate_module, "read_config", counting_read)  # their own names
    monkeypatch.setattr(hand_edit_module, "read_config", counting_read)
    monkeypatch.setattr(dirs_module, "discover_config_file", counting_find)
    monkeypatch.setenv("MOLTIS_SERVER__PORT", "7070")  # a layer both must apply
    cli_value = site.ok("get", "--effective", "server.port").out.strip()
    assert calls == {"parse": 1, "find": 1}
    calls.update(parse=0, find=0)
    assert gateway_port() == int(cli_value) == 7070
    assert calls == {"parse": 1, "find": 1}
    shown = json.loads(site.ok("show", "--effective", "--json").out)
    assert shown["server"]["port"] == 7070


def test_a_hand_edit_is_the_same_event_whoever_opens_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parity: the CLI and the gateway's open_store() import a hand edit identically."""
    results = []
    for who in ("cli", "gateway"):
        site = make_site(tmp_path / who)
        monkeypatch.setenv("MOLTIS_CONFIG_DIR", str(site.config_dir))
        monkeypatch.setenv("MOLTIS_DATA_DIR", str(site.data_dir))
        site.ok("migrate")
        site.edit("port = 13131", "port = 8443")
        site.edit('[identity]\nname = "Atlas"\n', "")
        if who == "cli":
            site.ok("get", "server.port")
        else:
            asyncio.run(open_store().close())
        event = site.ok("log", "--limit", "1", "--json").json()["events"][0]
        shown = site.ok("show", "--json").json()
        results.append(({k: event[k] for k in ("seq", "source", "actor", "changes")},
                        event["reason"].replace(str(site.root), "ROOT"), shown))
    assert results[0] == results[1]
    assert results[0][0]["source"] == "file"
    # the [identity] section deleted outright: one unset of the table (test_hand_edit_import)
    assert [(c["op"], c["path"]) for c in results[0][0]["changes"]] == [
        ("unset", "identity"), ("set", "server.port")]


def test_cli_watch_shows_a_hand_edit_made_while_it_runs(site: Site) -> None:
    import threading

    site.ok("migrate")
    head = site.ok("log", "--json").json()["head_seq"]

    def edit_soon() -> None:
        site.edit("agent_timeout_secs = 600", "agent_timeout_secs = 650")

    timer = threading.Timer(0.3, edit_soon)
    timer.start()
    try:
        result = site.ok("watch", "--after", str(head), "--count", "1", "--json",
                         "--interval", "0.02")
    finally:
        timer.join()
    event = json.loads(result.out.splitlines()[0])
    assert event["source"] == "file" and event["seq"] == head + 1
    assert event["changes"][0]["path"] == "tools.agent_timeout_secs"
