"""A process that once found no ledger key, or a wrong one (closing note 5, "Noticed"):
the vault remembered that for the life of the process (`Vault._integrity_missing`), so
a gateway started before its key file was in place read without the head MAC check
(and without trusting snapshots) until it was restarted, even after the key was put
there and other processes wrote with it. A key file that appears, or is replaced (as
an operator or a rotation does), is now picked up by the next read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import SqliteConfigStore
from ledger.engine.vault import KeySource
from ledger.errors import VerificationError
from tests.conftest import run
from tests.test_head_vouch import rechain


def _cli(db: Path, key_file: Path, *args: str) -> None:
    """`moltis-ledger --db DB ARGS` in a process of its own, the key in `key_file`."""
    env = {k: v for k, v in os.environ.items() if k != "MOLTIS_LEDGER_KEY"}
    env["MOLTIS_LEDGER_KEY_FILE"] = str(key_file)
    done = subprocess.run([sys.executable, "-m", "ledger", "--db", str(db), *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def _keyed(tmp_path: Path) -> tuple[Path, Path]:
    """(database, key file): a ledger written with the key in that file."""
    db, keys_dir = tmp_path / "moltis.db", tmp_path / "keys"
    keys_dir.mkdir(mode=0o700)
    key_file = keys_dir / "ledger.key"
    writer = SqliteConfigStore(db, keys=KeySource(key_file=key_file, env={}))
    run(writer.update_raw(lambda c: setattr(c.server, "port", 8300), actor="t"))
    writer.ledger.close()
    assert key_file.exists()
    return db, key_file


def _picked_up_then_tamper_refused(db: Path, key_file: Path, reader: SqliteConfigStore
                                   ) -> None:
    _cli(db, key_file, "set", "server.port", "8301")  # another process writes with it
    assert run(reader.load_raw()).server.port == 8301
    assert reader.ledger.vault.integrity() is not None
    # what the key proves is checked now (the head mark, the head MAC): a log
    # re-chained under the reader is refused, not served
    rechain(db, 2)
    with pytest.raises(VerificationError, match="this key"):
        run(reader.load_raw())
    reader.ledger.close()


def test_a_key_file_put_in_place_later_is_picked_up_by_a_running_reader(tmp_path):
    db, key_file = _keyed(tmp_path)
    held = key_file.with_name("held-back")
    key_file.rename(held)  # not in place yet when the reader starts (a mount, a deploy)
    reader = SqliteConfigStore(db, keys=KeySource(key_file=key_file, env={}))
    assert run(reader.load_raw()).server.port == 8300
    assert reader.ledger.vault.integrity() is None
    held.rename(key_file)
    _picked_up_then_tamper_refused(db, key_file, reader)


def test_a_wrong_key_file_replaced_by_the_right_one_is_picked_up(tmp_path):
    db, key_file = _keyed(tmp_path)
    right = key_file.read_bytes()
    key_file.write_text(os.urandom(32).hex() + "\n")
    reader = SqliteConfigStore(db, keys=KeySource(key_file=key_file, env={}))
    assert run(reader.load_raw()).server.port == 8300
    assert reader.ledger.vault.integrity() is None  # a wrong key: read as without one
    staged = key_file.with_name("ledger.key.tmp")
    staged.write_bytes(right)
    staged.chmod(0o600)
    os.replace(staged, key_file)  # as `key rotate` moves a key into place
    _picked_up_then_tamper_refused(db, key_file, reader)
