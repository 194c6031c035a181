"""The writer thread of the async ledger stores: every async write of this process on
one database runs in one dedicated thread, not in the event loop's default executor.

Why. With the default executor, each awaiting write holds one of its threads (up to
six here): after every group commit, all of them wake at once and, with the group's
leader, compete with the event loop's thread for the GIL. A thread that drops the GIL
for I/O usually hands it to another worker rather than to the loop, so the loop can
wait for the interpreter's forced switch (5 ms) several times over: a burst of async
writes stalled every task of the process for milliseconds. One writer thread per
database means one thread competes with the loop; it drops the GIL for each commit's
fsync, which is when the loop runs.

How. `Writer.run(call)` queues the blocking write `call(wait)` with the caller's
context (contextvars such as `acting_as`) and suspends the task. The thread takes up to
`GROUP_LIMIT` queued writes, runs each one's call in its own context inside
`group_commit.collecting()` (so each becomes a queued request of the database's
`Committer` instead of blocking the thread), then commits them as one group (one
transaction, one fsync, each write with its own event, seq, conflict check and
savepoint, see `ledger.engine.group_commit`), leading it or waiting for another
thread's group that took them. Each caller's task is then resumed with its own outcome
(`loop.call_soon_threadsafe`): a commit only once it is durable, an exception raised by
its own `fn` or check only to that caller. `GROUP_LIMIT` bounds the Python the thread
runs between two fsyncs while holding the GIL, which is what the loop waits for; after
a group with more writes queued the thread blocks until the loop has taken the outcomes
(`_hand_over`), so the loop gets the GIL between every two groups even when it got no
CPU during the fsync (with nothing queued the thread goes to sleep anyway).
Threads that call the synchronous `Ledger` API keep grouping with the writer thread
through the same `Committer`.

Cancellation. A write whose task is cancelled before the thread took it is withdrawn:
nothing is written and the task gets `CancelledError`. Once taken, it is committed or
refused as a whole (never half-applied); the cancelled task waits for that outcome and
then gets `CancelledError` whose message says which (the seq it was committed at, or
why it was refused), so `head_seq()`/`history()` can confirm it; so does a task cancelled
after its outcome arrived but before it resumed (`contract.told_outcome`, shared with the
worker-thread writes of `run_write`).

Lifetime. The thread starts with the first async write of a store and is shared by
every store of this process on the same database; closing the last of those stores
lets the thread finish the writes already queued (nothing acknowledged or accepted is
dropped) and joins it. A store garbage-collected without `close()` releases it too
(without joining): the thread keeps no reference to a store (a job holds its store's id
and drops its write's closure once run; the last group's jobs are not kept while the
thread waits), so a dropped store can be collected. The thread is a daemon, so it never
keeps the process alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Final, TypeVar

from ledger.engine.group_commit import Request, collecting
from ledger.stores.contract import told_outcome

__all__ = ["GROUP_LIMIT", "Writer", "release_collected", "writer_for"]

T = TypeVar("T")

# At most this many async writes per group the writer thread builds: a group's Python
# (about 60 to 150 µs per write) runs with the GIL held, so this bounds the loop's wait to
# about what a commit's fsync costs (the i16f figure), while a burst still shares fsyncs.
GROUP_LIMIT: Final = 3

# How often an idle writer thread looks for stores the garbage collector released.
IDLE_CHECK_S: Final = 0.5

# How long the thread waits for a loop to take its outcomes before going on (a loop
# stuck in long synchronous work must not hold up other loops' and threads' writes).
ACK_WAIT_S: Final = 0.05

_QUEUED, _TAKEN, _WITHDRAWN = 0, 1, 2


class _Job:
    __slots__ = ("call", "context", "future", "kept", "late", "loop", "owner", "state")

    def __init__(self, call: Callable[[bool], Any], loop: asyncio.AbstractEventLoop,
                 owner: object) -> None:
        # `call` (a closure over the store) and the caller's context are dropped once
        # the write ran (`spend`), and the store is kept only as its id: nothing the
        # thread holds may keep a store alive, or a store dropped without close() would
        # never be collected and never release the thread
        self.call: Callable[[bool], Any] | None = call
        self.owner = id(owner)  # the store that asked (`drain` waits for its writes)
        self.context: contextvars.Context | None = contextvars.copy_context()
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.state = _QUEUED
        # The task awaits `future` itself, so cancelling the task cancels it: a write
        # already taken then delivers its outcome to `late` (made by the cancelled task,
        # see `Writer.run`), or keeps it here until the task asks (all on the loop).
        self.late: asyncio.Future[Any] | None = None
        self.kept: tuple[Any, BaseException | None] | None = None

    def spend(self) -> Any:
        """Run the write `call(True)` in the caller's context, then forget both."""
        call, context = self.call, self.context
        self.call = self.context = None
        if call is None or context is None:
            raise RuntimeError("a queued write ran twice")  # a bug here, never input
        return context.run(call, True)


def _resolve(outcomes: list[tuple[_Job, Any, BaseException | None]],
             ack: threading.Event | None) -> None:
    """On the loop: hand each caller its outcome (the task may have been cancelled)."""
    if ack is not None:
        ack.set()
    for job, value, error in outcomes:
        target = job.future
        if target.cancelled():  # its task was cancelled while it waited (Writer.run)
            if job.late is None:
                job.kept = (value, error)  # the task has not asked for it yet
                continue
            target = job.late
        if target.done():
            continue
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result(value)


def _late_outcome(job: _Job) -> asyncio.Future[Any]:
    """On the loop, in a task cancelled after its write was taken: the future that holds
    (or will hold) the write's outcome."""
    if not job.future.cancelled():
        return job.future  # the outcome arrived before the task resumed
    late = job.late = job.loop.create_future()
    if job.kept is not None:  # it arrived after the cancellation, before this
        value, error = job.kept
        if error is not None:
            late.set_exception(error)
        else:
            late.set_result(value)
    return late


class Writer:
    """The writer thread of one database (see the module docstring)."""

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self._users = 0
        self._reset()

    def _reset(self) -> None:
        """No thread, nothing queued (a new writer, or one inherited by a forked child)."""
        # re-entrant: a garbage-collected store's finalizer may release this writer in
        # whatever thread the collection ran, even inside one of these locked sections
        self._cond = threading.Condition(threading.RLock())
        self._jobs: deque[_Job] = deque()
        self._busy: dict[int, int] = {}  # id(owner) -> its writes queued or running
        self._acks: list[threading.Event] = []  # what `_hand_over` is waiting for
        self._stopping = False
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        """Start the thread (with self._cond held)."""
        self._stopping = False
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name="moltis-ledger-writer")
        self._thread.start()

    async def run(self, call: Callable[[bool], T], owner: object) -> T:
        """Run the blocking write `call(wait)` of the store `owner` in the writer thread;
        return its outcome once it is durable (see the module docstring for
        cancellation)."""
        job = _Job(call, asyncio.get_running_loop(), owner)
        with self._cond:
            if self._thread is None and self._users > 0 and not self._stopping:
                self._start()  # a forked child: the parent's thread is not here
            if self._stopping or self._thread is None:
                raise RuntimeError("the store's writer thread has stopped")
            self._jobs.append(job)
            self._busy[id(owner)] = self._busy.get(id(owner), 0) + 1
            self._cond.notify_all()  # the thread (a `drain` may be waiting too)
        try:
            # the future itself, not a shield around it: the task resumes in the loop
            # iteration that resolves it, not one later (a shield's own callback takes
            # an iteration, with its select call), on every write; a cancellation is
            # handled below and the outcome still reaches the task (`_late_outcome`)
            result: T = await job.future
            return result
        except asyncio.CancelledError:
            with self._cond:
                if job.state == _QUEUED:
                    job.state = _WITHDRAWN
                    job.call = job.context = None
                    self._jobs.remove(job)
                    self._done_with([job])
                    raise  # never started: nothing written
            # taken: its outcome may even have arrived already (the task was cancelled
            # before it resumed); either way the caller learns what became of the write
            raise asyncio.CancelledError(await told_outcome(_late_outcome(job))) from None

    def drain(self, owner: object) -> None:
        """Block until every write `owner` queued is done (its store is closing; the
        thread never waits for an event loop, so this cannot deadlock with one)."""
        with self._cond:
            while self._busy.get(id(owner)):
                for ack in self._acks:  # the thread must not wait for this blocked loop
                    ack.set()
                self._cond.wait()

    def _done_with(self, jobs: list[_Job]) -> None:
        for job in jobs:  # with self._cond held
            left = self._busy[job.owner] - 1
            if left:
                self._busy[job.owner] = left
            else:
                del self._busy[job.owner]
        self._cond.notify_all()

    def acquire(self) -> None:
        with self._cond:
            self._users += 1
            if self._thread is None:
                self._start()

    def release(self, join: bool = True) -> bool:
        """One store stopped using this writer; for the last one, the thread finishes
        the writes queued and ends (joined, with `join`). True when it was the last."""
        with self._cond:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return False
            self._stopping = True
            self._cond.notify_all()
            for ack in self._acks:  # the loop that would set them may be the one joining
                ack.set()
            thread = self._thread
        if join and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            if self._thread is thread:
                self._thread = None
        return True

    def _main(self) -> None:
        # each group in a frame of its own: nothing of the last group (its jobs, their
        # outcomes) stays referenced while the thread waits for the next one
        while self._next_group():
            pass

    def _next_group(self) -> bool:
        """Wait for queued writes and run up to GROUP_LIMIT of them as one group; False
        once the writer is stopping and every accepted write is done."""
        with self._cond:
            if not self._jobs and not self._stopping:
                # bounded: a store's GC finalizer cannot notify (it never waits for a
                # lock, see `release_collected`), so an idle thread looks for its work
                self._cond.wait(IDLE_CHECK_S)
            if not self._jobs:
                if self._stopping:
                    return False
                jobs = None
            else:
                jobs = [self._jobs.popleft()
                        for _ in range(min(GROUP_LIMIT, len(self._jobs)))]
                for job in jobs:
                    job.state = _TAKEN
        if jobs is None:
            if _collected:
                _drain_collected()
            return True
        self._group(jobs)
        return True

    def _group(self, jobs: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        waiting: list[tuple[_Job, Request]] = []
        with collecting() as queued:
            for job in jobs:
                before = len(queued)
                try:
                    value = job.spend()
                except BaseException as err:  # only this caller's write failed
                    outcomes.append((job, None, err))
                    continue
                mine = queued[before:]
                if len(mine) == 1 and value is mine[0].request:
                    waiting.append((job, value))
                else:  # done without a group (a ledger without a committer)
                    outcomes.append((job, value, None))
        if queued:
            try:
                queued[0].committer.settle([q.request for q in queued], queued[0].commit)
            except BaseException as err:  # settle fills in outcomes; this is a last resort
                for q in queued:
                    if not q.request.done:
                        q.request.done, q.request.error = True, err
        for job, req in waiting:
            try:
                outcomes.append((job, req.outcome(), None))
            except BaseException as err:
                outcomes.append((job, None, err))
        with self._cond:
            self._done_with(jobs)  # first: a closing store's drain() may hold its loop
            # Nothing queued: the thread goes to sleep for the next write anyway, which
            # gives the loop the GIL, so no hand-over wait (`_hand_over`) is needed: the
            # loop neither wakes this thread a second time (the ack) nor waits for it
            # to take the GIL back, on every uncontended write (figure 1)
            hand_over = bool(self._jobs)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]] = {}
        for item in outcomes:
            by_loop.setdefault(item[0].loop, []).append(item)
        acks: list[threading.Event] = []
        for loop, items in by_loop.items():
            ack = threading.Event() if hand_over else None
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, items, ack)
                if ack is not None:
                    acks.append(ack)
        if hand_over:
            self._hand_over(acks)

    def _hand_over(self, acks: list[threading.Event]) -> None:
        """Block until each loop has taken its outcomes (at most ACK_WAIT_S per loop).

        Dropping the GIL for a moment (an fsync, a SQLite call) does not hand it to the
        loop on a busy machine: the woken loop thread often gets no CPU before this
        thread takes the GIL back, and then waits for the interpreter's forced switch
        (5 ms) while this thread runs the next group's Python. Blocking here until the
        loop has run gives it the GIL between every two groups; the writes that arrive
        meanwhile join the next group, so no fsync is added."""
        with self._cond:
            if self._stopping:  # the closing loop may be blocked joining this thread
                return
            self._acks = acks
            if self._busy:
                self._cond.notify_all()  # a drain() blocking a loop sets them
        for ack in acks:
            ack.wait(ACK_WAIT_S)
        with self._cond:
            self._acks = []


_registry: dict[Hashable, Writer] = {}
_registry_lock = threading.RLock()  # re-entrant: see Writer._cond


def _after_fork_in_child() -> None:
    """A forked child has only the forking thread: the writer threads, their queues
    (futures of the parent's loops) and any lock one of them held are the parent's.
    Forget them; a store the parent opened starts a new thread on its next write
    (a pre-fork server that opened the store before forking must not hang)."""
    global _registry_lock  # noqa: PLW0603 - the parent's lock may be held by a thread the child lacks
    _registry_lock = threading.RLock()
    for writer in _registry.values():
        writer._reset()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


# Writers released by the garbage collector (a store dropped without close()), not yet
# processed: see `release_collected`.
_collected: deque[Writer] = deque()


def release_collected(writer: Writer) -> None:
    """The finalizer of a store garbage-collected without `close()`: release its writer
    without ever waiting for a lock.

    A collection runs finalizers in whatever thread allocated at that moment, including
    a thread being started while another holds `_registry_lock` or the writer's lock
    and waits for that start (`Thread.start()` waits for the new thread): a finalizer
    that waited for either lock would deadlock both (a test run hung on it). So the
    release is queued, done now if both locks are free, and otherwise by the next
    `writer_for`/`release` or by the idle writer thread itself (`IDLE_CHECK_S`)."""
    _collected.append(writer)
    _drain_collected(blocking=False)


def _drain_collected(blocking: bool = True) -> None:
    if not _registry_lock.acquire(blocking=blocking):
        return  # its holder, or the next caller, drains the queue
    try:
        for _ in range(len(_collected)):
            try:
                writer = _collected.popleft()
            except IndexError:  # another thread drained it meanwhile
                break
            if not writer._cond.acquire(blocking=blocking):
                _collected.append(writer)
                continue
            try:
                last = writer.release(join=False)
            finally:
                writer._cond.release()
            if last and _registry.get(writer.key) is writer:
                del _registry[writer.key]
    finally:
        _registry_lock.release()


def writer_for(key: Hashable) -> Writer:
    """The writer of the database `key` (a backend's `group_key()`), acquired for one
    store: call `release()` once when that store closes."""
    with _registry_lock:
        if _collected:
            _drain_collected()
        writer = _registry.get(key)
        if writer is None:
            writer = _registry[key] = Writer(key)
        writer.acquire()
        return writer


def release(writer: Writer, join: bool = True) -> None:
    """`writer.release()`, forgetting it once its thread is stopping (a store that is
    garbage-collected without `close()` goes through `release_collected` instead)."""
    with _registry_lock:
        if _collected:
            _drain_collected()
        if writer.release(join) and _registry.get(writer.key) is writer:
            del _registry[writer.key]
