"""The checks every imported event passes (bundle import, restore, backend copies), the
same an append enforces: nothing enters a ledger that the engine would not have written.

Rows read from a file or another database are input. A chain that verifies says the
rows were not changed since someone hashed them, not that the engine could have written
them: anyone can re-chain a log. So each row must also have text every backend stores
(no NUL), a payload that decodes, a time that never goes backwards and is not in the far
future (one event stamped 2^63-1 would freeze every later event's time), and a size
within the limit of one append.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from ledger.core.events import Record, decode_event, now_us
from ledger.core.text_rule import refuse_nul
from ledger.errors import InputError, LedgerError, VerificationError
from ledger.files.safe_io import MAX_FILE_BYTES

__all__ = ["checked_records"]

MAX_CLOCK_SKEW_US: Final = 24 * 3600 * 1_000_000  # a day ahead of this clock at most


def checked_records(records: Iterable[Record], where: str) -> Iterator[Record]:
    """`records`, each checked as it passes; raises VerificationError (or InputError for
    text no backend can store) naming the first bad event."""
    latest = now_us() + MAX_CLOCK_SKEW_US
    prev_ts = 0
    for rec in records:
        for field in ("actor", "reason", "source", "kind"):
            try:
                refuse_nul(getattr(rec, field), f"{where}: event {rec.seq}'s {field}")
            except InputError as err:
                raise VerificationError(str(err), rec.seq) from None
        if not 0 <= rec.ts <= latest:
            raise VerificationError(f"{where}: event {rec.seq} has an impossible time "
                                    f"({rec.ts} µs since 1970); nothing was imported", rec.seq)
        if rec.ts < prev_ts:
            raise VerificationError(f"{where}: event {rec.seq}'s time is before event "
                                    f"{rec.seq - 1}'s; nothing was imported", rec.seq)
        if len(rec.payload) > MAX_FILE_BYTES:
            raise VerificationError(f"{where}: event {rec.seq} is larger than one append may "
                                    f"be ({MAX_FILE_BYTES:,} bytes); nothing was imported",
                                    rec.seq)
        try:
            decode_event(rec)
        except LedgerError as err:
            raise VerificationError(f"{where}: event {rec.seq} does not decode ({err}); "
                                    "nothing was imported", rec.seq) from None
        prev_ts = rec.ts
        yield rec
