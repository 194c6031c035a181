"""A keyed read checks the stored head MAC against the head (issue 13: what is stored
is served only when proven). Without the head mark beside the key (deleted, or the
config dir is new), a log re-chained by someone without the ledger key still fails
there: the MAC row, checked with the key at hand, names another head. A head with no
MAC row (written by a keyless writer) stays legitimately unvouched: served with the
warning, as before."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ledger import SqliteConfigStore
from ledger.engine.head_mark import MARK_NAME
from ledger.errors import BackendUnavailableError, VerificationError
from ledger.ops.mirror import MIRROR_NAME, slot_paths
from ledger.ops.open_store import open_store
from tests.conftest import run
from tests.operator import make_site
from tests.test_head_vouch import bump, keyless, rechain, sql, store_at
from tests.test_integrity import invoke


@pytest.fixture
def db(tmp_path: Path) -> Path:
    config = Path(os.environ["MOLTIS_CONFIG_DIR"])
    config.mkdir(mode=0o700, parents=True, exist_ok=True)
    return tmp_path / "moltis.db"


def _written_then_rechained(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for port in ("8001", "8002", "8003"):
        assert invoke(capsys, db, "set", "server.port", port).exit_code == 0
    mark = Path(os.environ["MOLTIS_CONFIG_DIR"]) / MARK_NAME
    assert mark.exists()
    mark.unlink()  # the attacker deleted it (or the config dir is a new one)
    rechain(db, 2)
    sql(db, ("DELETE FROM ledger_meta WHERE key = 'head_signature'", ()))


def test_a_rechained_log_without_a_head_mark_is_refused_by_get(db, capsys) -> None:
    _written_then_rechained(db, capsys)
    served = invoke(capsys, db, "get", "server.port")
    assert served.exit_code == 3, served.output
    assert "verify" in served.output and "restore" in served.output
    assert "sign-head --adopt" in served.output
    assert invoke(capsys, db, "verify").exit_code == 3
    assert "head MAC" in served.output and "8002" not in served.output
    # adopting needs a passing verify, which a log the MAC disowns never gets: the
    # repair is a restore (what verify says too)
    assert invoke(capsys, db, "sign-head", "--adopt").exit_code == 3


def test_a_forged_head_mac_row_is_refused(db, capsys) -> None:
    _written_then_rechained(db, capsys)
    sql(db, ("UPDATE ledger_meta SET value = 'v1 3 ' || substr(value, 6) "
             "WHERE key = 'head_mac'", ()))
    assert invoke(capsys, db, "get", "server.port").exit_code == 3


def test_a_truncated_log_without_a_head_mark_is_refused(db, capsys) -> None:
    for port in ("8001", "8002", "8003"):
        assert invoke(capsys, db, "set", "server.port", port).exit_code == 0
    (Path(os.environ["MOLTIS_CONFIG_DIR"]) / MARK_NAME).unlink()
    sql(db, ("DELETE FROM ledger_events WHERE seq = 3", ()),
        ("DELETE FROM ledger_meta WHERE key = 'head_signature'", ()))
    assert invoke(capsys, db, "get", "server.port").exit_code == 3


def test_a_keyless_tail_is_served_and_a_keyed_head_without_mac_refused(db, tmp_path,
                                                                        capsys) -> None:
    store = store_at(db)
    bump(store, 2)
    store.ledger.close()
    (Path(os.environ["MOLTIS_CONFIG_DIR"]) / MARK_NAME).unlink(missing_ok=True)
    # a writer without the key appends on top: the MAC names an earlier head of this log
    plain = SqliteConfigStore(db, keys=keyless(tmp_path))
    bump(plain)
    plain.ledger.close()
    reader = SqliteConfigStore(db)
    assert run(reader.load_raw()).tools.agent_timeout_secs == 603
    reader.ledger.close()
    # a writer without the key leaves the MAC row behind; a keyed ledger without one had
    # it deleted (tests/test_head_mac_gaps.py: with a rolled-back log)
    sql(db, ("DELETE FROM ledger_meta WHERE key IN ('head_mac', 'head_signature')", ()))
    reader = SqliteConfigStore(db)
    with pytest.raises(VerificationError, match="no head MAC row"):
        run(reader.load_raw())
    reader.ledger.close()


def test_the_gateway_serves_the_mirror_or_refuses(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    site.ok("migrate")
    for port in ("8001", "8002", "8003"):
        site.ok("set", "server.port", port, "--reason", port)
    (site.config_dir / MARK_NAME).unlink()
    rechain(site.db, 2)
    sql(site.db, ("DELETE FROM ledger_meta WHERE key = 'head_signature'", ()))
    store = open_store()
    assert asyncio.run(store.load_effective()).server.port == 8003
    assert "could not be used" in (getattr(store, "read_only_reason", None) or "")
    for slot in slot_paths(site.data_dir / MIRROR_NAME):
        slot.unlink(missing_ok=True)
    with pytest.raises(BackendUnavailableError, match="head MAC"):
        open_store()


def test_the_named_repair_of_a_rechained_log_works(db, capsys) -> None:
    """`restore FILE` (what the refusal names) is not itself refused by the check."""
    for port in ("8001", "8002", "8003"):
        assert invoke(capsys, db, "set", "server.port", port).exit_code == 0
    backup = db.parent / "kept.db"
    assert invoke(capsys, db, "backup", "-o", str(backup)).exit_code == 0
    _written_then_rechained(db, capsys)
    restored = invoke(capsys, db, "restore", "--force", str(backup))
    assert restored.exit_code == 0, restored.output
    served = invoke(capsys, db, "get", "server.port")
    assert served.exit_code == 0 and served.output.splitlines()[0] == "8003", served.output
    assert invoke(capsys, db, "verify").exit_code == 0
