"""A planted `fp_key` row beside a changed key check (closing note 5, "Noticed"): the
proof that the held key is this ledger's asked the rows a rotation may leave under
the old key (head MAC, head signature, snapshot MACs) only while no `fp_key` row said
the ledger was rotated. Anyone who can write the file could add a junk one with a
changed `key_check`: the right key then counted as a wrong key, and reads went on
without the head MAC check, with a warning only. A rotation now leaves nothing under
the old key (it re-MACs, re-signs and re-seals the snapshots in its own transaction),
so those rows are always asked."""

from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path

from tests.operator import invoke


def _tamper(db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE ledger_meta SET value = ? WHERE key = 'key_check'",
                     (os.urandom(32).hex(),))
        conn.execute("INSERT OR REPLACE INTO ledger_meta (key, value) VALUES ('fp_key', ?)",
                     (base64.b64encode(os.urandom(60)).decode(),))
    conn.close()


def test_a_junk_fp_key_row_does_not_make_the_right_key_a_wrong_one(tmp_path):
    for port in ("8400", "8401", "8402"):
        assert invoke(["set", "server.port", port]).code == 0
    db = tmp_path / "data" / "moltis.db"
    _tamper(db)
    result = invoke(["get", "server.port"])
    assert result.code == 3, result
    assert "key_check" in result.err and "changed" in result.err, result.err


def test_after_a_rotation_the_old_key_is_a_wrong_key_not_tampering(tmp_path, key_file):
    """The other side: every row the old key wrote is under the new key once the
    rotation commits, so a holder of the old key is told it holds a wrong key."""
    for port in ("8410", "8411"):
        assert invoke(["set", "server.port", port]).code == 0
    old = key_file.read_text()
    assert invoke(["key", "rotate"]).code == 0
    old_file = tmp_path / "old.key"
    old_file.write_text(old)
    old_file.chmod(0o600)
    result = invoke(["get", "server.port"], env={"MOLTIS_LEDGER_KEY_FILE": str(old_file)})
    assert result.code == 0 and "8411" in result.out, result
    assert "does not match" in result.err, result.err
