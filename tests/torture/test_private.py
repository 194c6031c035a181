"""Promise 6: files stay private whatever the umask.

Under umask 0o000 and 0o022, through the library and through the CLI (a subprocess
whose umask is set before it starts): the database and its -wal/-shm, the key file,
migrate backups (folder and files), exports with revealed secrets, bundles, backups,
and the file stores' moltis.toml / provider_keys.json with their lock files (while
held: they are removed after each write) are created
mode 0600, and every folder the library creates on the way (missing parents included)
0700. Everything under each output folder is created by the code under test, so every
file and folder there is checked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ledger import MoltisConfig, Secret, SqliteConfigStore
from ledger.engine.vault import KeySource
from ledger.files.safe_io import locked
from ledger.ops.backup import backup
from ledger.ops.export import export_documents, write_export
from ledger.ops.migrate import migrate
from ledger.schema.providers import ProviderConfig
from ledger.stores.file_providers import FileProviderStore
from ledger.stores.file_store import FileConfigStore
from tests.conftest import run
from tests.torture import stats
from tests.torture.helpers import run_cli

pytestmark = pytest.mark.torture

UMASKS = [0o000, 0o022]
CONFIG = '[server]\nport = 8080\n\n[providers.openai]\napi_key = "sk-private-config"\n'
KEYS = '{"anthropic": {"apiKey": "sk-private-keys"}}\n'


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def assert_private(root: Path, expect: set[str] | None = None) -> None:
    """`root` and everything under it: folders 0700, files 0600 (and the names expected
    are there)."""
    assert root.is_dir(), root
    found = set()
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        assert mode == wanted, f"{path}: mode {mode:04o}, expected {wanted:04o}"
        found.add(path.name)
        stats.add("private_files")
    missing = (expect or set()) - found
    assert not missing, f"not created: {missing}"


def _secret(cfg: MoltisConfig) -> None:
    entry = cfg.providers.get("mistral") or ProviderConfig()
    entry.api_key = Secret("sk-private-mistral")
    cfg.providers["mistral"] = entry


@pytest.mark.parametrize("mask", UMASKS, ids=lambda m: f"umask{m:03o}")
def test_library_creates_private_files(tmp_path: Path, mask: int) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "moltis.toml").write_text(CONFIG)
    (inputs / "provider_keys.json").write_text(KEYS)
    out = tmp_path / "out"  # everything below is created by the library
    with umask(mask):
        keys = KeySource(key_file=out / "config" / "deep" / "ledger.key", env={})
        db = out / "data" / "deep" / "moltis.db"
        store = SqliteConfigStore(db, keys=keys)
        ledger = store.ledger
        report = migrate(ledger, config_file=inputs / "moltis.toml",
                         keys_file=inputs / "provider_keys.json", data_dir=out / "data" / "mdata")
        assert report.appended and report.backup_dir is not None
        run(store.update_raw(_secret))
        run(store.providers.set("openai", api_key="sk-private-provider"))
        files = export_documents(ledger, ledger.head_state().seq, reveal=True)
        assert "sk-private-mistral" in files.config_text
        write_export(files, out / "export" / "deep")
        assert backup(ledger, out / "backups" / "deep" / "copy.db").ok
        fs = FileConfigStore(out / "files" / "deep" / "moltis.toml")
        run(fs.update_raw(lambda c: setattr(c.server, "port", 8081)))
        providers = FileProviderStore(out / "files" / "deep" / "provider_keys.json")
        run(providers.set("openai", api_key="sk-private-file"))
        wal = Path(f"{db}-wal")
        assert wal.exists() and Path(f"{db}-shm").exists()
        # (both input files hold a secret, so the migration backup seals them)
        assert_private(out / "data", {"moltis.db", "moltis.db-wal", "moltis.db-shm", "backups",
                                      "manifest.json", "moltis.toml.sealed",
                                      "provider_keys.json.sealed"})
        assert_private(out / "config", {"ledger.key"})
        assert_private(out / "export", {"moltis.toml", "provider_keys.json"})
        assert_private(out / "backups", {"copy.db"})
        # lock files exist only while a write holds them (removed after): held here
        # (under the same umask) to check them too
        assert sorted(os.listdir(out / "files" / "deep")) == ["moltis.toml",
                                                             "provider_keys.json"]
        with locked(fs.path, wait=False), locked(providers.path, wait=False):
            assert_private(out / "files", {"moltis.toml", "moltis.toml.lock",
                                           "provider_keys.json", "provider_keys.json.lock"})
        ledger.close()


@pytest.mark.parametrize("mask", UMASKS, ids=lambda m: f"umask{m:03o}")
def test_cli_creates_private_files(tmp_path: Path, mask: int) -> None:
    config = tmp_path / "config"  # the operator's own folder and files: not checked
    config.mkdir()
    (config / "moltis.toml").write_text(CONFIG)
    (config / "provider_keys.json").write_text(KEYS)
    out = tmp_path / "out"
    out.mkdir(mode=0o700)  # the folder the operator names for bundles
    env = {k: v for k, v in os.environ.items() if k != "MOLTIS_LEDGER_KEY"}
    env.update(MOLTIS_CONFIG_DIR=str(config), MOLTIS_DATA_DIR=str(out / "data" / "deep"),
               MOLTIS_LEDGER_KEY_FILE=str(out / "keys" / "deep" / "ledger.key"))

    def cli(*args: str, stdin: bytes | None = None) -> str:
        res = run_cli(*args, env=env, umask=mask, stdin=stdin)
        assert res.code == 0, (args, res)
        return res.out

    cli("migrate")
    cli("set", "providers.mistral.api_key", "-", stdin=b"sk-private-cli\n")
    cli("export", "--reveal-secrets", "-o", str(out / "export" / "deep"))
    cli("bundle", "--with-secrets", "-o", str(out / "ledger.bundle"))
    cli("backup", "-o", str(out / "backups" / "deep" / "copy.db"))
    assert "sk-private-cli" in (out / "export" / "deep" / "moltis.toml").read_text()
    assert_private(out, {"moltis.db", "moltis.db-wal", "moltis.db-shm", "backups",
                         "manifest.json", "ledger.key", "moltis.toml", "provider_keys.json",
                         "ledger.bundle", "copy.db"})
