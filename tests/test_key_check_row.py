"""A changed `key_check` row must not make the holder of the right key act as if it had
none (no head MAC check on reads, appends without a MAC): the key is proven by the
ledger's own rows (a sealed secret, the sealed fingerprint key, or before any rotation
the head MAC: ledger.engine.key_proof), and the command stops with exit 3, naming the
row and the repair. A key that proves nothing is a wrong key, as before: other config
stays readable (tests/test_secrets.py::test_wrong_key_fails_only_when_a_secret_is_read)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger.backends.base import HEAD_MAC
from tests.test_head_vouch import meta, sql
from tests.test_integrity import invoke

SECRET = "sk-KEYCHECK-row-5b1e"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    Path(os.environ["MOLTIS_CONFIG_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    return tmp_path / "moltis.db"


def _events(db: Path) -> int:
    import apsw

    conn = apsw.Connection(str(db))
    try:
        return int(next(iter(conn.execute("SELECT count(*) FROM ledger_events")))[0])
    finally:
        conn.close()


def _head_mac(db: Path) -> str:
    import apsw

    conn = apsw.Connection(str(db))
    try:
        return str(next(iter(conn.execute("SELECT value FROM ledger_meta WHERE key = ?",
                                          (HEAD_MAC,))))[0])
    finally:
        conn.close()


def _change_key_check(db: Path, *, utf8: bool = True) -> None:
    value: object = os.urandom(32).hex() if utf8 else b"\xff\xfe not UTF-8"
    sql(db, ("UPDATE ledger_meta SET value = CAST(? AS TEXT) WHERE key = 'key_check'",
             (value,)))


def _refused(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    before, mac = _events(db), _head_mac(db)
    got = invoke(capsys, db, "get", "server.port")
    assert got.exit_code == 3, got.output
    assert "key_check" in got.output and "restore" in got.output
    assert SECRET not in got.output
    wrote = invoke(capsys, db, "set", "server.port", "9999")
    assert wrote.exit_code == 3, wrote.output
    assert "key_check" in wrote.output
    assert _events(db) == before and _head_mac(db) == mac  # nothing appended unMAC'd


@pytest.mark.parametrize(("with_secret", "utf8"), [(True, True), (False, True), (True, False)])
def test_a_changed_key_check_is_named_not_taken_for_no_key(db, capsys, with_secret,
                                                            utf8) -> None:
    if with_secret:
        assert invoke(capsys, db, "set", "providers.openai.api_key", SECRET).exit_code == 0
    for port in ("8001", "8002"):
        assert invoke(capsys, db, "set", "server.port", port).exit_code == 0
    _change_key_check(db, utf8=utf8)
    _refused(capsys, db)


def test_a_changed_key_check_after_a_rotation_is_named(db, capsys, key_file) -> None:
    assert invoke(capsys, db, "set", "providers.openai.api_key", SECRET).exit_code == 0
    assert invoke(capsys, db, "key", "rotate").exit_code == 0
    assert "fp_key" in meta(db)
    assert invoke(capsys, db, "set", "server.port", "8001").exit_code == 0
    _change_key_check(db)
    _refused(capsys, db)


def test_the_named_repair_works(db, capsys) -> None:
    """`restore FILE` (what the error names) replaces a ledger whose key check row was
    changed; the restored ledger serves and takes writes with the key again."""
    assert invoke(capsys, db, "set", "providers.openai.api_key", SECRET).exit_code == 0
    assert invoke(capsys, db, "set", "server.port", "8001").exit_code == 0
    backup = db.parent / "kept.db"
    assert invoke(capsys, db, "backup", "-o", str(backup)).exit_code == 0, "backup"
    _change_key_check(db)
    assert invoke(capsys, db, "verify").exit_code == 3
    restored = invoke(capsys, db, "restore", str(backup))
    assert restored.exit_code == 0, restored.output
    served = invoke(capsys, db, "get", "server.port")
    assert served.exit_code == 0 and served.output.splitlines()[0] == "8001", served.output
    assert invoke(capsys, db, "set", "server.port", "8002").exit_code == 0
    assert invoke(capsys, db, "verify").exit_code == 0
