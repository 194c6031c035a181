"""The head MAC and the head signature are judged by one rule (`head_vouch.judge_row`):
decode the row, check it with this ledger key, and place the event it names (the head,
an earlier event of this log, or not in it). The one difference is a parameter: a MAC
may name an event newer than the head read (a writer committed since: its MAC row and
events commit together), a signature may not (it is only read where no MAC row is)."""

from __future__ import annotations

import os

import pytest

from ledger.backends.base import HEAD_MAC, HEAD_SIGNATURE
from ledger.engine import head_vouch
from ledger.engine.integrity_keys import IntegrityKeys

LEDGER_ID = b"ledger-id-0001"
KEYS = IntegrityKeys(os.urandom(32))
LOG = {n: bytes([n]) * 32 for n in range(1, 6)}  # a log of 5 events, by seq
HEAD = (3, LOG[3])  # the head read; events 4 and 5 committed since


def _rows(seq: int, hash_: bytes, keys: IntegrityKeys = KEYS) -> dict[str, str]:
    return {HEAD_MAC: keys.mac_head(LEDGER_ID, seq, hash_).encode(),
            HEAD_SIGNATURE: keys.sign_head(seq, hash_, LEDGER_ID).encode()}


def _both(rows: dict[str, str]) -> tuple[tuple[str | None, int], tuple[str | None, int]]:
    mac = head_vouch.mac_verdict(rows.get, KEYS, LEDGER_ID, HEAD, LOG.get)
    sig_rows = {k: v for k, v in rows.items() if k != HEAD_MAC}
    sig = head_vouch.signature_verdict(sig_rows.get, KEYS, LEDGER_ID, HEAD, LOG.get)
    return mac, sig


def test_the_shared_cases_are_judged_alike() -> None:
    assert _both(_rows(*HEAD)) == ((None, 0), (None, 0))
    assert _both(_rows(1, LOG[1])) == ((None, 2), (None, 2))  # a tail of 2 events
    (mac, _), (sig, _) = _both(_rows(2, b"\x09" * 32))  # not in this log
    assert mac is not None and "not in this log" in mac
    assert sig is not None and "not in this log" in sig
    (mac, _), (sig, _) = _both(_rows(3, LOG[3], IntegrityKeys(os.urandom(32))))
    assert mac is not None and "does not check" in mac
    assert sig is not None and "not this key's" in sig
    (mac, _), (sig, _) = _both({HEAD_MAC: "garbage", HEAD_SIGNATURE: "garbage"})
    assert mac is not None and "not readable" in mac
    assert sig is not None and sig.startswith("it was written with the ledger key")


def test_the_one_difference_an_event_newer_than_the_head_read() -> None:
    (mac, tail), (sig, _) = _both(_rows(5, LOG[5]))
    assert (mac, tail) == (None, 0)
    assert sig is not None and "names event 5, which is not in this log" in sig


@pytest.mark.parametrize("newer_ok", [True, False])
def test_one_helper_places_the_named_event(newer_ok: bool) -> None:
    mac = KEYS.mac_head(LEDGER_ID, 5, LOG[5])
    judged = head_vouch.judge_row(mac.encode(), type(mac).decode,
                                  lambda m: KEYS.mac_valid(LEDGER_ID, m), HEAD, LOG.get,
                                  newer_ok=newer_ok)
    assert judged.outcome == ("vouches" if newer_ok else "elsewhere")
