"""Why `ledger.core.constant_time` takes `_compare_digest` from `_operator` rather than
`hmac`: `import hmac` loads hashlib and OpenSSL's `_hashlib` (a median 5.3 ms measured
on 2026-12-03), which the `get` path otherwise never loads. If `get` ever loads hashlib
anyway, this fails, and the public `hmac.compare_digest` costs nothing more: use it."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli_start import make_ledger, probe


def test_get_loads_neither_hmac_nor_hashlib(tmp_path: Path) -> None:
    make_ledger(tmp_path)
    code, modules, output = probe("get", "server.port")
    assert (code, output) == (0, "13131")
    assert "ledger.core.constant_time" in modules  # the comparison is on this path
    assert not {"hmac", "hashlib", "_hashlib"} & modules
