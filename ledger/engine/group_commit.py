"""Group commit: concurrent writers in one process share one transaction and one fsync.

The log is one hash chain, so appends serialize, and each durable commit costs an fsync
that dominates everything else. When several threads (or async tasks, which run their
writes in worker threads) append at once, the first one to find no commit in flight
becomes the *leader*: it takes every request queued so far and commits them in one
write transaction, each as its own event (its own seq, hash link, conflict check and
snapshot), each inside a savepoint so that a failing `fn` or an invalid value undoes only
its own writes and is raised only to its own caller (any BaseException too: a caller's
KeyboardInterrupt or cancellation is re-raised in that caller's thread only). If a
failure undid the whole transaction instead (SQLite does on a trigger's RAISE(ROLLBACK),
and may on a full disk or an I/O error), nothing of the group was written: the group
stops there and every caller of it gets that error. Everyone else waits; when the
commit (and its fsync) has returned, each waiter wakes with its own outcome, and one of
those still queued leads the next group. A lone writer leads a group of one, which costs
what a plain append costs.

Grouping spans `Ledger` instances: every ledger opened on the same database file in this
process (several stores, as a gateway with one store per component would have) shares
one `Committer`, found by the backend's `group_key()`; the leader runs the whole group
on its own connection. Writers in other processes still serialize on the database's
lock (SQLite's write lock; PostgreSQL's append lock, an advisory lock). On PostgreSQL
the savepoints cost no round trip: the group's statements are queued and sent with its
COMMIT in one pipeline (`ledger.backends.postgres`).

A writer thread that serves many callers (the async stores' writer,
`ledger.stores.writer`) queues several requests from one thread: inside `collecting()`,
`run` queues the request and returns it at once instead of waiting, and `settle` then
waits for (or leads) the groups that commit them.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from ledger.errors import StoreBusyError

__all__ = ["Committer", "Queued", "Request", "collecting", "committer_for"]

# per thread: while set (by `collecting`), `Committer.run` queues instead of waiting
_collect = threading.local()

# The longest a leader waits for the last group's writers to queue again (see
# Committer._gather_writers); normally the last commit's duration bounds it first.
_GATHER_MAX_S = 0.002


class Request:
    """One caller's append, waiting in (or being committed by) a group."""

    __slots__ = ("done", "error", "ledger", "params", "record", "result")

    def __init__(self, ledger: Any, params: Any) -> None:
        self.ledger = ledger  # the Ledger whose caller asked (its vault seals the secrets)
        self.params = params
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.record: Any = None  # the event it stored (the group signs the last one)

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class Committer:
    """Leader election for group commits on one database (see the module docstring).

    `shared` holds what the leader of the last group left behind for the next one (the
    head state and its typed view), so consecutive groups led by different ledgers
    continue from the same objects instead of each catching up on its own."""

    def __init__(self) -> None:
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # followers wait here for their outcome
        self._gather = threading.Condition(lock)  # a gathering leader waits here
        self._queue: list[Request] = []
        self._leading = False
        self._gathering = False
        self._last_size = 1  # requests in the last group `run` led
        self._last_commit_s = 0.0  # what the last group's commit took
        self.gather_max_s = _GATHER_MAX_S
        self.shared: dict[str, Any] = {}

    def run(self, req: Request, commit: Callable[[list[Request]], None], *,
            wait: bool = True, busy: str = "") -> Any:
        """Commit `req` (in a group, when others are waiting) and return its outcome.

        `commit(batch)` runs one write transaction for the batch and fills in each
        request's result or error. With `wait=False` a commit in flight raises
        StoreBusyError at once instead of queueing. Inside `collecting()` (and with
        `wait=True`) the request is only queued and returned; `settle` commits it."""
        queued: list[Queued] | None = getattr(_collect, "queued", None)
        if queued is not None and wait:
            with self._cond:
                self._queue.append(req)
                self._wake_gatherer()
            queued.append(Queued(self, req, commit))
            return req
        with self._cond:
            if not wait:
                if self._leading or self._queue:
                    raise StoreBusyError(busy or "the ledger is being written by another "
                                         "thread of this process")
                self._leading = True
                batch = [req]
            else:
                self._queue.append(req)
                self._wake_gatherer()
                while not req.done and self._leading:
                    self._cond.wait()
                if req.done:
                    return req.outcome()
                self._leading = True
                self._gather_writers()
                batch, self._queue = self._queue, []
            self._last_size = len(batch)
        self._lead(batch, commit)
        return req.outcome()

    def _wake_gatherer(self) -> None:
        """After queueing (the lock held): wake a gathering leader once the last of the
        writers it waits for is here."""
        if self._gathering and len(self._queue) >= self._last_size:
            self._gather.notify()

    def _gather_writers(self) -> None:
        """Before leading (the lock held): wait for the writers of the last group to
        queue again, at most as long as the last commit took.

        When a group's commit returns, its leader and its followers all wake at once,
        and the first of them back (usually the leader, which holds the GIL) would find
        the queue empty and commit alone while the others were still on their way back:
        groups alternate between one writer and the rest, and every other fsync carries
        a single event. Waiting for as many writers as the last group had restores full
        groups. The wait is bounded by what one commit costs, so it never costs more
        than the commit it saves; a lone writer (a last group of one) never waits."""
        want = self._last_size
        if len(self._queue) >= want:
            return
        deadline = time.perf_counter() + min(self._last_commit_s, self.gather_max_s)
        self._gathering = True
        try:
            while len(self._queue) < want:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._gather.wait(left)
        finally:
            self._gathering = False

    def settle(self, reqs: list[Request], commit: Callable[[list[Request]], None]) -> None:
        """Return once every one of `reqs` (queued by `run` inside `collecting()`) has
        its outcome: wait while another thread's group commits them, else lead a group
        of everything queued (theirs and other threads' requests) with `commit`."""
        while True:
            with self._cond:
                while self._leading and not all(r.done for r in reqs):
                    self._cond.wait()
                if all(r.done for r in reqs):
                    return
                self._leading = True
                batch, self._queue = self._queue, []
            self._lead(batch, commit)

    def _lead(self, batch: list[Request], commit: Callable[[list[Request]], None]) -> None:
        started = time.perf_counter()
        try:
            commit(batch)
        except BaseException as err:  # the transaction failed: nothing of it was written
            for r in batch:
                if not r.done:
                    r.error = err
        finally:
            took = time.perf_counter() - started
            with self._cond:
                for r in batch:
                    r.done = True
                self._last_commit_s = took
                self._leading = False
                self._cond.notify_all()


class Queued:
    """A request `Committer.run` queued inside `collecting()`, with how to commit it."""

    __slots__ = ("commit", "committer", "request")

    def __init__(self, committer: Committer, request: Request,
                 commit: Callable[[list[Request]], None]) -> None:
        self.committer = committer
        self.request = request
        self.commit = commit


@contextmanager
def collecting() -> Iterator[list[Queued]]:
    """In this thread, queue appends instead of waiting for their commit (see the module
    docstring); yields the list they are added to."""
    queued: list[Queued] = []
    _collect.queued = queued
    try:
        yield queued
    finally:
        _collect.queued = None


_registry: weakref.WeakValueDictionary[Hashable, Committer] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def committer_for(key: Hashable) -> Committer:
    """The committer shared by every ledger of this process on the database `key`."""
    with _registry_lock:
        found = _registry.get(key)
        if found is None:
            found = _registry[key] = Committer()
        return found
