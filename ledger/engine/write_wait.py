"""What a writer does while it waits for other processes' writers: the part of its
write that needs no lock, so that its turn holding the lock is about a lone writer's.

Writer processes take turns on the write lock (SQLite's, behind the queue of writer
processes: ledger.backends.write_queue). A writer whose turn comes must first catch up
on what the writers ahead of it committed: read and replay their events (checking
their chain), convert the typed sections they changed, and check the head MAC they
left and the key check before vouching for a head of its own. Done inside the lock,
that work made every hand-over longer than a lone writer's turn, and the others wait
for it (figure 8). `WaitWork` is called by the queue while the writer waits (at once,
then about once per other writer's turn): it does that work on what is committed so
far, so inside the lock only the events committed since its last call remain.

Nothing here decides what is written or weakens a check made inside the lock:
- the catch-up is the ledger's read path (`Ledger.head_state`: the same chain walk and
  refusals as any read), and the write transaction still reads the head and catches up
  on whatever came after;
- a head MAC checked here with the held key vouches for exactly that head (seq, hash),
  which stays true; the write's transaction skips reading the MAC only when it appends
  onto that very head (`HeadVoucher.checked_ahead`), as it does for a head this
  process vouched for itself;
- the key check is confirmed only from the same read as that MAC (`Vault.confirm`): a
  key rotation moves the head in the transaction that changes it;
Any error here is left to the write's own steps, which meet it again and report it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ledger._log import get_logger

if TYPE_CHECKING:
    from ledger.engine.group_commit import Request
    from ledger.engine.ledger import Ledger
    from projections.config_view import ConfigState

__all__ = ["WaitWork"]

_log = get_logger("ledger.engine.write_wait")


class WaitWork:
    """The `while_waiting` callback of one write of `ledger` (Backend.write) for the
    requests of `batch`: catch up on the head, run each request's `prepare(state)` (its
    caller's own preparation, e.g. the typed view its edit starts from), and check the
    head MAC and key check left by the writer of that head. Never raises (see the
    module docstring)."""

    __slots__ = ("_batch", "_done_at", "_ledger", "_stopped")

    def __init__(self, ledger: Ledger, batch: Sequence[Request] = ()) -> None:
        # made for every write, called only by one that has to wait: nothing is
        # computed before it is called
        self._ledger = ledger
        self._batch = batch
        self._done_at: ConfigState | None = None
        self._stopped = False

    def __call__(self) -> None:
        if self._stopped:
            return
        try:
            self._step()
        except Exception as err:  # the write meets it again inside the lock, and says so
            self._stopped = True
            _log.debug("no more work while waiting for the write lock",
                       location=self._ledger.backend.location,
                       error=f"{type(err).__name__}: {err}")

    def _step(self) -> None:
        ledger = self._ledger
        state = ledger.head_state()  # the read path: a cheap poll when nothing changed
        if state is self._done_at:
            return
        self._done_at = state
        for req in self._batch:
            if req.params.prepare is not None:
                req.params.prepare(state)
        if state.seq == 0:
            return
        vault = ledger.vault
        keys = vault.integrity()
        if keys is None:
            return
        head = (state.seq, state.hash)
        rows = ledger.backend.meta_items()  # the MAC and key check of one read
        if ledger.voucher.checked_ahead(rows, keys, vault.ledger_id, head):
            vault.confirm(head, rows.get("key_check"))
