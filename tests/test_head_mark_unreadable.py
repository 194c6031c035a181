"""A head mark that cannot be read (closing note 5, "Noticed"): garbage, a file of the
wrong size, a directory or a FIFO in its place was taken for no mark on reads, without
a word, so the one check that notices an older copy of the ledger put back was off
and nobody was told. Reads now warn, naming the file and the fix; `verify` notes it.
(Root runs this suite, so a mark this process may not read cannot be made here.)"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.operator import invoke

HOW = ["garbage", "empty", "directory", "fifo"]


def _spoil(mark: Path, how: str) -> None:
    assert mark.is_file(), mark
    if how == "garbage":
        mark.write_bytes(os.urandom(200))
    elif how == "empty":
        mark.write_bytes(b"")
    else:
        mark.unlink()
        if how == "directory":
            mark.mkdir()
        else:
            os.mkfifo(mark, 0o600)


def _marked(key_file: Path) -> Path:
    """A keyed ledger whose head mark was written (a write signs its first checkpoint)."""
    assert invoke(["set", "server.port", "8200"]).code == 0
    return key_file.with_name("ledger-head.hwm")


@pytest.mark.parametrize("how", HOW)
def test_a_read_warns_about_a_head_mark_it_cannot_read(key_file, how):
    mark = _marked(key_file)
    _spoil(mark, how)
    try:
        result = invoke(["get", "server.port"])
        assert result.code == 0 and "8200" in result.out, result
        assert str(mark) in result.err and "head mark" in result.err, result.err
        assert "sign-head" in result.err and "older copy" in result.err, result.err
    finally:
        if mark.is_dir():
            shutil.rmtree(mark)


def test_verify_notes_a_head_mark_it_cannot_read(key_file):
    mark = _marked(key_file)
    _spoil(mark, "garbage")
    result = invoke(["verify"])
    assert result.code == 0, result
    assert str(mark) in result.out + result.err, result


def test_no_mark_at_all_is_said_nothing_about(key_file):
    mark = _marked(key_file)
    mark.unlink()
    result = invoke(["get", "server.port"])
    assert result.code == 0 and "head mark" not in result.err, result
