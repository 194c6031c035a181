"""The head MAC and the checkpoint signature, on memory, SQLite and PostgreSQL alike
(the kit of tests/contract/test_backend_contract.py): every append MACs the head in its
own transaction, checkpoints sign, and a writer never vouches for a head nobody
vouched for. PostgreSQL's optimistic path (`wait=False`: one statement carries the
event and the MAC; a checkpoint's signature takes the lock) is covered too."""

from __future__ import annotations

import pytest

from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE
from ledger.engine.ledger import Ledger
from ledger.errors import VerificationError
from tests.contract.test_backend_contract import Kit, fill, kit  # noqa: F401 (fixture)


def _meta(kit: Kit) -> dict[str, str]:  # noqa: F811 (the fixture)
    return kit.reopen().meta_items()


def test_every_append_macs_the_head_and_checkpoints_sign(kit: Kit) -> None:  # noqa: F811
    ledger = Ledger(kit.backend)
    ledger.voucher.every, ledger.voucher.secs = 3, 1e9
    fill(ledger, 5)
    meta = _meta(kit)
    assert meta[HEAD_MAC].startswith("v1 5 ") and meta[HEAD_SIGNATURE].startswith("v2 4 ")
    for wait in (False, True, False, False):  # optimistic and locked appends
        ledger.edit({("server", "port"): 2000}, actor="t", wait=wait)
        ledger.edit({("server", "port"): 2001}, actor="t", wait=wait)
    meta = _meta(kit)
    head = kit.reopen().head().seq
    assert head == 13 and meta[HEAD_MAC].startswith("v1 13 ")
    assert meta[HEAD_SIGNATURE].startswith("v2 13 ")  # 4, 7, 10, 13
    report = Ledger(kit.reopen()).verify(expect_key=ledger.vault.integrity().fingerprint)  # type: ignore[union-attr]
    assert report.ok and (report.signed_seq, report.mac_seq) == (13, 13), report


def test_a_keyed_ledger_nobody_vouched_for_is_refused_until_adopted(
        kit: Kit) -> None:  # noqa: F811
    ledger = Ledger(kit.backend)
    fill(ledger, 2)
    for key in (HEAD_SIGNATURE, HEAD_MAC):
        if kit.sql is None:
            del kit.backend._meta[key]  # type: ignore[attr-defined]
        else:
            kit.sql("DELETE FROM ledger_meta WHERE key = ?", (key,))
    other = Ledger(kit.reopen())
    if other._committer is not None:  # as another process: no memory of what this one
        other._committer.shared.pop("vouched", None)  # vouched for on that database
    # a keyed ledger with events and no MAC row: its row was deleted (a keyless writer
    # leaves it behind), so a keyed open refuses it, as a disowned MAC
    with pytest.raises(VerificationError, match="sign-head --adopt"):
        other.edit({("server", "port"): 3000}, actor="t")
    assert HEAD_MAC not in _meta(kit) and HEAD_SIGNATURE not in _meta(kit)
    assert other.head_problem() is not None
    assert other.sign_head(adopt=True)
    other.edit({("server", "port"): 3001}, actor="t")
    assert _meta(kit)[HEAD_MAC].startswith("v1 3 ")
    assert Ledger(kit.reopen()).verify(
        expect_key=other.vault.integrity().fingerprint).ok  # type: ignore[union-attr]
