"""The PostgreSQL store, with small writes held in one transaction (:class:`chunkd.core.store.HeldWrites`).

A small chunk on PostgreSQL used to cost two write transactions: the claim (a claim row with a lease,
committed so that other writers see it) and the record (the ranges and pieces, committed durably, the
claim row dropped). Each is two round trips (``_pg_txn``) and a commit. PostgreSQL can let other writers
*wait* instead: the transaction that reads the session ``FOR UPDATE`` keeps it locked, so the claim's
decision holds until the record commits, with no claim row at all -- one transaction, one commit, two round
trips: ``BEGIN`` + the claim's reads, then (after the bytes are flushed) the record's writes + ``COMMIT``.
SQLite has no row locks: holding its one write lock across a data flush would stop every other session, so
the SQLite store keeps the two transactions.
"""

from __future__ import annotations

from collections.abc import Callable

from chunkd.core.store import Claimed, Recorded, ToRecord, WriteIntent
from chunkd.metadata.sql import SqlSessionStore

__all__ = ["PgSessionStore"]


class PgSessionStore(SqlSessionStore):
    """:class:`SqlSessionStore` on PostgreSQL, plus :meth:`write_held_blocking`."""

    def write_held_blocking(self, intent: WriteIntent, now: float,
                            write: Callable[[Claimed], ToRecord | None]) -> tuple[Claimed, Recorded | None]:
        wrote = [False]

        def guarded(claimed: Claimed) -> ToRecord | None:
            wrote[0] = True
            return write(claimed)

        def run() -> tuple[Claimed, Recorded | None]:
            try:
                return self._held(intent, now, guarded)
            except self._integrity_errors:
                # two creators of one id: the second's INSERT waited for the first's commit and failed on the
                # key -- before its write ran, so it may claim again, now that the session exists
                if intent.create is None or wrote[0]:
                    raise
                return self._held(intent, now, guarded)

        return self._blocking(run)

    def _held(self, intent: WriteIntent, now: float,
              write: Callable[[Claimed], ToRecord | None]) -> tuple[Claimed, Recorded | None]:
        with self._fast_write() as t:  # durable: its commit acknowledges the bytes
            claimed, around = self._claim_in(t, intent, now, 0.0, rows=False)
            # a created session's INSERT goes now, before any byte is written: a concurrent creator of the
            # same id then waits on the key until this commits, and fails (and claims again) instead of
            # writing into a range this transaction is about to record
            t.flush()
            todo = write(claimed)
            if todo is None:
                return claimed, None
            pieces = todo.pieces
            # the ranges read around the intent are those around the first piece when it is the whole intent
            whole = bool(pieces) and (pieces[0].start, pieces[0].end) == (intent.start, intent.end)
            recorded = self._apply(t, claimed.session, pieces, todo.now, todo.expires_at, None, todo.missing_limit,
                                   todo.on_complete, around if whole else None)
        return claimed, recorded
