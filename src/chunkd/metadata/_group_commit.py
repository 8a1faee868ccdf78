"""Group commit: concurrent write transactions of one store object share one transaction and one commit.

A durable acknowledgement waits for its metadata commit (a WAL fsync on SQLite, a WAL flush on
PostgreSQL). Requests that wait at the same moment need not pay one each: the first to arrive becomes
the *leader*, takes every member queued so far, runs each member's work in a SAVEPOINT of one
transaction and commits once; the *followers* block until that commit is done and then return (or
raise) what their own work produced. Members arriving meanwhile form the next batch, led by the first
of them.

Guarantees, unchanged from one transaction per call:

* no member returns before the commit that holds its writes is done (durability);
* a member whose own work raises is rolled back to its savepoint and gets its error; the others go on;
* a failed commit (or any error outside a member's work) fails every member of the batch with that error,
  and none of their writes is kept (all or nothing, like a failed single transaction).

Batching is per store object, i.e. per process; nothing depends on it across processes (N nodes each
batch their own requests, the database orders them as it would order single transactions). A member
alone in its batch costs what it did before (no savepoint: on PostgreSQL a savepoint that writes
takes a subtransaction id of its own).

Test hooks: ``batches`` counts the commits, ``members`` the work items; ``gate``, when set to an
unset ``threading.Event``, makes a leader wait for it before taking the queue (so a test can line up
members deterministically); ``before_commit`` runs in the leader just before the commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from chunkd.metadata._prepared import Txn

__all__ = ["GroupCommit"]


@dataclass(eq=False)
class _Member:
    work: Callable[[Txn], Any]
    lock_id: str | None
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # set by the previous leader: this member leads the next batch
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    """Leader/follower batching of write transactions (see the module docstring)."""

    def __init__(self, begin: Callable[[], AbstractContextManager[Txn]], lock: Callable[[Txn, str], None]) -> None:
        """``begin`` opens one write transaction (committed when its block ends, rolled back on error);
        ``lock(t, id)`` takes a session's row lock inside it (PostgreSQL; a no-op where the transaction
        locks the whole database): for every session of a batch of several sessions, in one order, before
        any work runs, so that two batches cannot deadlock. A batch of one session takes no lock first:
        its work must lock the session's row itself (the record does, reading the row), one round trip
        fewer."""
        self._begin, self._lock = begin, lock
        self._mutex = threading.Lock()
        self._queue: list[_Member] = []
        self._leading = False
        self.batches = 0
        self.members = 0
        self.gate: threading.Event | None = None
        self.before_commit: Callable[[], None] | None = None

    def run(self, work: Callable[[Txn], Any], lock_id: str | None = None) -> Any:
        """Run ``work(t)`` in a shared transaction and return its result once that transaction is
        committed. Raises what ``work`` raised (nothing of it kept) or what failed the batch's commit.
        Blocks the calling thread: call it from a worker thread."""
        me = _Member(work, lock_id)
        with self._mutex:
            self._queue.append(me)
            self.members += 1
            leader = not self._leading
            if leader:
                self._leading = True
        if not leader:
            me.done.wait()
            if not me.lead:
                return _outcome(me)
            me.lead = False
            me.done.clear()
        self._lead()
        me.done.wait()
        return _outcome(me)

    def queued(self) -> int:
        """Members waiting for a leader to take them (a test hook)."""
        with self._mutex:
            return len(self._queue)

    def _lead(self) -> None:
        gate = self.gate
        if gate is not None:
            gate.wait()
        with self._mutex:
            batch, self._queue = self._queue, []
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                nxt = self._queue[0] if self._queue else None
                if nxt is None:
                    self._leading = False
            for m in batch:
                m.done.set()
            if nxt is not None:  # hand over: the first member that arrived meanwhile leads the next batch
                nxt.lead = True
                nxt.done.set()

    def _commit(self, batch: list[_Member]) -> None:
        try:
            with self._begin() as t:
                # lock in one order, so two batches (or two processes' batches) cannot deadlock on each other
                ids = sorted({m.lock_id for m in batch if m.lock_id is not None})
                for sid in ids if len(ids) > 1 else ():  # one lock alone cannot deadlock: its work takes it
                    self._lock(t, sid)
                if len(batch) == 1:  # alone: its own error rolls the transaction back, no savepoint needed
                    batch[0].result = batch[0].work(t)
                for i, m in enumerate(batch if len(batch) > 1 else ()):
                    t.execute(f"SAVEPOINT m{i}")
                    try:
                        m.result = m.work(t)
                        t.flush()  # its writes sent now, so that their error is this member's, not the next's
                    except Exception as exc:
                        t.execute(f"ROLLBACK TO SAVEPOINT m{i}")
                        m.error = exc
                    t.execute(f"RELEASE SAVEPOINT m{i}")
                if self.before_commit is not None:
                    self.before_commit()
            self.batches += 1
        except BaseException as exc:
            for m in batch:  # nothing of the batch was kept: every member fails with the batch's error
                m.result, m.error = None, exc
            raise_if_not_exception(exc)


def raise_if_not_exception(exc: BaseException) -> None:
    """KeyboardInterrupt and the like still propagate (in the leader) after the members were told."""
    if not isinstance(exc, Exception):
        raise exc


def _outcome(m: _Member) -> Any:
    if m.error is not None:
        raise m.error
    return m.result
