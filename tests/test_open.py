"""Backend selection, first-start migration, the read-only fallback, and Moltis's own
entry points over the selected store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ledger import InputError, ReadOnlyError, SqliteConfigStore
from ledger.compat import discover_and_load, forget_stores, save_config, update_config
from ledger.ops.migrate import migrate
from ledger.ops.open_store import open_store
from ledger.stores.file_store import FileConfigStore
from tests.conftest import run


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    config = tmp_path / "config"
    data = tmp_path / "data"
    config.mkdir()
    return config, data


def test_default_backend_is_the_file(dirs):
    config, _ = dirs
    (config / "moltis.toml").write_text("[server]\nport = 13131\n")
    store = open_store()
    assert isinstance(store, FileConfigStore)
    assert run(store.load_raw()).server.port == 13131


@pytest.mark.parametrize("how", ["toml", "env"])
def test_sqlite_backend_imports_the_files_on_first_start(dirs, monkeypatch, how, fixtures_dir):
    config, data = dirs
    shutil.copy(fixtures_dir / "docs-example.moltis.toml", config / "moltis.toml")
    shutil.copy(fixtures_dir / "provider_keys.json", config / "provider_keys.json")
    if how == "toml":
        with (config / "moltis.toml").open("a") as f:
            f.write('\n[config]\nbackend = "sqlite"\n')
    else:
        monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "sqlite")
    store = open_store()
    assert isinstance(store, SqliteConfigStore)
    assert store.path == data / "moltis.db"
    cfg = run(store.load_raw())
    assert (cfg.server.port, cfg.server.bind, cfg.identity.name) == (13131, "0.0.0.0", "Atlas")
    keys = run(store.providers.list())
    assert keys["openai"].api_key.reveal() == "sk-EXAMPLE-NOT-REAL"
    first = run(store.head_seq())
    assert first == 1
    events = run(store.history())
    assert events[0].source == "import"
    backups = list((data / "backups").iterdir())
    assert len(backups) == 1
    manifest = json.loads((backups[0] / "manifest.json").read_text())
    assert set(manifest["files"]) == {"moltis.toml", "provider_keys.json"}
    # a second start imports nothing again
    again = open_store()
    assert run(again.head_seq()) == first
    assert len(list((data / "backups").iterdir())) == 1


def test_env_wins_over_the_file_and_unknown_backends_are_named(dirs, monkeypatch):
    config, _ = dirs
    (config / "moltis.toml").write_text('[config]\nbackend = "sqlite"\n')
    monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "file")
    assert isinstance(open_store(), FileConfigStore)
    monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "etcd")
    with pytest.raises(InputError, match=r"'etcd'.*MOLTIS_CONFIG_BACKEND"):
        open_store()
    monkeypatch.delenv("MOLTIS_CONFIG_BACKEND")
    (config / "moltis.toml").write_text('[config]\nbackend = "mongo"\n')
    with pytest.raises(InputError, match=r"'mongo'.*\[config\] backend"):
        open_store()


def test_an_unusable_ledger_falls_back_to_a_read_only_file_store(dirs, monkeypatch, caplog):
    config, data = dirs
    (config / "moltis.toml").write_text("[server]\nport = 4000\n")
    data.mkdir()
    (data / "moltis.db").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "sqlite")
    store = open_store()
    assert isinstance(store, FileConfigStore)
    assert run(store.load_raw()).server.port == 4000
    assert any("unavailable" in r.getMessage() for r in caplog.records)
    with pytest.raises(ReadOnlyError, match="could not be used"):
        run(store.update_raw(lambda c: setattr(c.server, "port", 1)))
    assert (config / "moltis.toml").read_text() == "[server]\nport = 4000\n"


def test_a_failed_first_import_falls_back_too(dirs, monkeypatch):
    config, _ = dirs
    (config / "moltis.toml").write_text("[server]\nport = 4000\n")
    (config / "provider_keys.json").write_text("{ not json")
    monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "sqlite")
    store = open_store()
    assert isinstance(store, FileConfigStore)
    assert store.read_only


def test_migrate_is_incremental_and_never_reverts_ledger_edits(tmp_path):
    cfg_file = tmp_path / "moltis.toml"
    cfg_file.write_text("[server]\nport = 1\nbind = \"0.0.0.0\"\n[identity]\nname = \"A\"\n")
    ledger = SqliteConfigStore(tmp_path / "l.db").ledger
    report = migrate(ledger, config_file=cfg_file, keys_file=None, data_dir=tmp_path / "data")
    assert report.appended
    assert report.backup_dir is not None
    assert not migrate(ledger, config_file=cfg_file, keys_file=None,
                       data_dir=tmp_path / "data").appended
    ledger.edit({("identity", "name"): "Edited in the ledger"})
    cfg_file.write_text("[server]\nport = 2\nbind = \"0.0.0.0\"\n[identity]\nname = \"A\"\n")
    preview = migrate(ledger, config_file=cfg_file, keys_file=None,
                      data_dir=tmp_path / "data", dry_run=True)
    assert [c.path for c in preview.changes] == [("server", "port")]
    report = migrate(ledger, config_file=cfg_file, keys_file=None, data_dir=tmp_path / "data")
    assert [c.path for c in report.changes] == [("server", "port")]
    doc = ledger.head_state().config
    assert doc["server"]["port"] == 2
    assert doc["identity"]["name"] == "Edited in the ledger"
    # removing a key from the file removes it from the ledger
    cfg_file.write_text("[server]\nport = 2\n[identity]\nname = \"A\"\n")
    migrate(ledger, config_file=cfg_file, keys_file=None, data_dir=tmp_path / "data")
    assert "bind" not in ledger.head_state().config["server"]


def test_moltis_entry_points_over_the_selected_store(dirs, monkeypatch):
    config, data = dirs
    (config / "moltis.toml").write_text("[server]\nport = 13131\n")
    monkeypatch.setenv("MOLTIS_CONFIG_BACKEND", "sqlite")
    monkeypatch.setenv("MOLTIS_SERVER__BIND", "0.0.0.0")
    try:
        cfg = discover_and_load()
        assert (cfg.server.port, cfg.server.bind) == (13131, "0.0.0.0")
        update_config(lambda c: setattr(c.server, "port", 14000), reason="compat")
        cfg = discover_and_load()
        cfg.identity.name = "Atlas"
        save_config(cfg, reason="onboarding")
        store = SqliteConfigStore(data / "moltis.db")
        doc = run(store.raw_document())
        # the environment override never reached the stored config
        assert doc == {"server": {"port": 14000}, "identity": {"name": "Atlas"}}
        assert [e.reason for e in run(store.history())][:2] == ["onboarding", "compat"]
    finally:
        forget_stores()


def test_dsn_forms_select_postgres_and_never_leak_the_password():
    from ledger.ops.installation import describe_location, is_dsn

    assert is_dsn("postgresql://u:pw@db/ledger")
    assert is_dsn("host=db dbname=ledger user=u password=pw")
    # libpq takes its keywords in any order (review r30)
    assert is_dsn("password=pw host=db dbname=ledger")
    assert is_dsn(" sslmode = require host=db")
    # by the form's shape: a keyword of a newer libpq than any list (the reread)
    assert is_dsn("require_auth=scram-sha-256 password=pw host=db")
    assert "pw" not in describe_location("require_auth=scram-sha-256 password=pw host=db")
    assert "pw" not in describe_location("password=pw host=db dbname=ledger")
    assert not is_dsn("/var/lib/moltis/moltis.db")
    assert not is_dsn("moltis.db")
    assert "pw" not in describe_location("postgresql://u:pw@db:5432/ledger")
    assert "pw" not in describe_location("host=db dbname=ledger user=u password=pw")


def test_a_path_under_backend_postgres_is_refused_not_written_as_sqlite(tmp_path: Path):
    """`backend = postgres` with a location that is no DSN: the gateway refuses it, and
    so does the CLI, instead of writing to a SQLite file of that name the gateway never
    reads (the reread: `set` printed "appended" and created the file)."""
    from tests.migrated_site import cli_process, keyed_env

    target = tmp_path / "not-a-dsn.db"
    env = keyed_env(tmp_path, "tester@reread", MOLTIS_CONFIG_BACKEND="postgres",
                    MOLTIS_CONFIG_DSN=str(target))
    done = cli_process(env, "set", "server.port", "2")
    assert done.returncode != 0 and "needs a postgresql:// DSN" in done.stderr, done
    assert not target.exists()
