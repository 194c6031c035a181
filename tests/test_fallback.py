"""The gateway's fallback serves the newest state it can prove (issue 15): the ledger
read-only when it can still be read, else the head mirror, never the pre-import
moltis.toml once the ledger has moved on; a bad file value is reported, not fatal; a
moltis.toml that stops parsing does not stop a healthy ledger."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ledger.errors import BackendUnavailableError, ReadOnlyError
from ledger.ops.open_store import open_store
from ledger.stores.file_store import FileConfigStore
from ledger.stores.ledger_store import LedgerConfigStore
from tests.operator import KEYS, Site, make_site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


async def _port_and_key() -> tuple[str, int, str | None]:
    store = open_store()
    try:
        cfg = await store.load_effective()
        key = cfg.providers.get("openai")
        secret = key.api_key.reveal() if key is not None and key.api_key is not None else None
        return store.backend_name, cfg.server.port, secret
    finally:
        await store.close()


def test_the_head_mirror_is_written_after_each_commit(site: Site) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    mirror = site.data_dir / "ledger-head.0.json"  # seq 2: slot 0 (slots alternate)
    assert stat.S_IMODE(mirror.stat().st_mode) == 0o600
    doc = json.loads(json.loads(mirror.read_text())["body"])
    assert doc["seq"] == 2 and doc["config"]["server"]["port"] == 8080
    text = mirror.read_text()
    for entry in KEYS.values():
        assert entry["apiKey"] not in text  # sealed, never in clear
    assert "<secret" not in text  # references, never placeholders
    assert doc["keys"]["openai"]["apiKey"]["$secret"] in doc["sealed"]
    # a shred leaves the destroyed value in neither slot
    site.ok("shred", "--path", "keys:openai.apiKey", "--yes")
    for slot in ("ledger-head.0.json", "ledger-head.1.json"):
        body = json.loads(json.loads((site.data_dir / slot).read_text())["body"])
        assert doc["keys"]["openai"]["apiKey"]["$secret"] not in body["sealed"], slot


def test_an_unreadable_ledger_falls_back_to_the_mirror_not_the_old_file(site: Site) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    site.ok("set", "providers.openai.api_key", "sk-in-the-ledger")
    for suffix in ("-wal", "-shm"):
        Path(f"{site.db}{suffix}").unlink(missing_ok=True)
    site.db.write_bytes(b"this is not a database any more" * 100)
    backend, port, key = asyncio.run(_port_and_key())
    assert (backend, port, key) == ("mirror", 8080, "sk-in-the-ledger")
    store = open_store()
    # its [config] names the ledger it mirrors, not the schema's default (`file`)
    wiring = asyncio.run(store.load_effective()).config
    assert (wiring.backend, wiring.db) == ("sqlite", str(site.db))
    with pytest.raises(ReadOnlyError, match="could not be used"):
        asyncio.run(store.edit({("server", "port"): 1}))


def test_the_mirror_names_its_ledger_as_the_ledger_does(site: Site,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A ledger named by a path that is not in its plain form (`data/./moltis.db`): the
    head mirror served in its place gives the same `[config] db` as the ledger did."""
    monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "sqlite")
    monkeypatch.setenv("MOLTIS_CONFIG_DB", f"{site.data_dir}/./moltis.db")
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    store = open_store()
    ledger_view = asyncio.run(store.load_effective()).config
    asyncio.run(store.close())
    assert (ledger_view.backend, ledger_view.db) == ("sqlite", str(site.db))
    for suffix in ("-wal", "-shm"):
        Path(f"{site.db}{suffix}").unlink(missing_ok=True)
    site.db.write_bytes(b"this is not a database any more" * 100)
    store = open_store()
    assert store.backend_name == "mirror"
    assert asyncio.run(store.load_effective()).config == ledger_view


def test_a_full_disk_opens_the_ledger_read_only(site: Site) -> None:
    """A real process whose writes cannot grow any file (RLIMIT_FSIZE 0: EFBIG, as on
    a full disk) still gets the ledger's head, read-only."""
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    for slot in ("ledger-head.0.json", "ledger-head.1.json"):
        (site.data_dir / slot).unlink()  # only the ledger itself can say 8080
    script = textwrap.dedent("""
        import asyncio, resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        from ledger.ops.open_store import open_store
        async def main():
            store = open_store()
            cfg = await store.load_effective()
            print(store.backend_name, cfg.server.port, getattr(store, "read_only", None))
        asyncio.run(main())
    """)
    for suffix in ("-wal", "-shm"):
        Path(f"{site.db}{suffix}").unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=os.environ, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:2] == ["sqlite", "8080"], proc.stdout + proc.stderr


def test_a_bad_value_in_the_served_file_is_reported_not_fatal(site: Site,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    site.edit("port = 13131", 'port = "abc"')
    monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "sqlite")
    store = open_store()
    assert isinstance(store, FileConfigStore) and store.read_only
    cfg = asyncio.run(store.load_effective())
    assert cfg.server.port != "abc" and cfg.identity.name == "Atlas"
    assert any("server.port" in p for p in store.problems)


def test_a_config_file_that_stops_parsing_does_not_stop_a_healthy_ledger(site: Site) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    site.toml.write_text("[server\nport = = 1\n")
    store = open_store()
    assert isinstance(store, LedgerConfigStore)
    assert asyncio.run(store.load_effective()).server.port == 8080
    asyncio.run(store.close())
    assert site.ok("get", "server.port").out.strip() == "8080"


def test_a_mirror_not_written_with_the_ledger_key_is_never_served(site: Site) -> None:
    site.ok("migrate")
    site.ok("set", "server.port", "8080")
    for slot in ("ledger-head.0.json", "ledger-head.1.json"):
        mirror = site.data_dir / slot
        outer = json.loads(mirror.read_text())
        forged = outer["body"].replace('"port": 8080', '"port": 6666').replace(
            '"port": 13131', '"port": 6666')
        mirror.write_text(json.dumps({"mac": outer["mac"], "body": forged}))
    for suffix in ("-wal", "-shm"):
        Path(f"{site.db}{suffix}").unlink(missing_ok=True)
    site.db.write_bytes(b"not a database" * 100)
    # the forged 6666 is not served, nor the pre-import file (the ledger moved on)
    with pytest.raises(BackendUnavailableError, match="is not served"):
        asyncio.run(_port_and_key())
