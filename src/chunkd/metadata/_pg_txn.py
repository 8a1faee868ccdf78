"""PostgreSQL transactions in few round trips: statements bound by psycopg and sent together.

With the extended protocol every statement is a round trip, and psycopg adds one for ``BEGIN``: a 64 KiB
chunk's claim and record were 18, about 100 µs each on this machine (client + server CPU and two
wake-ups), the largest part of why PostgreSQL metadata ran at 0.4-0.5x SQLite. Here a transaction's
statements are bound client-side (psycopg's ``ClientCursor.mogrify``, its own literal quoting: values never
become SQL) and joined into one simple-protocol message wherever nothing needs a result in between: the
``BEGIN`` goes with the first statement, a batch of reads goes at once, and writes whose counts nobody
reads (``Txn.later``) go with the next read or with the ``COMMIT``. A claim or a record is then two round
trips. ``bench/README.md`` ("fifth round") has the figures.

Semantics are those of :class:`~chunkd.metadata._prepared.Txn`: statements run in call order, each in its
own snapshot (READ COMMITTED takes one per statement, also inside one message, so a read sent after a
``FOR UPDATE`` sees what the lock's previous holder committed); an error fails the transaction and is raised
by the call that sent it, which may come after the one that caused it. The connection runs in autocommit
mode while it is lent out, so that ``BEGIN`` and ``COMMIT`` are ours to send; it goes back to the pool in
the driver's default mode, or is dropped if its state is not known.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from chunkd.metadata._prepared import Out, Prepared, Txn

if TYPE_CHECKING:  # psycopg is an optional dependency (the postgres extra): imported when first used
    from psycopg import ClientCursor

_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE (libpq's PQTRANS_IDLE)
# A soft transaction's commit does not wait for its WAL flush: claims, renewals and releases are leases,
# soft state, lost harmlessly with a crash of the database (SQLite's NORMAL commits, _sqlite_writer.py).
# The next durable commit on the cluster -- the record that acknowledges bytes -- flushes the WAL up to its
# own end, these frames included, so nothing acknowledged depends on a soft commit having been flushed.
_SOFT = "SET LOCAL synchronous_commit = off"

__all__ = ["PgTxn", "pg_transaction"]


class PgTxn(Txn):
    def __init__(self, cursor: ClientCursor[Any], begin: bool, soft: bool = False) -> None:
        super().__init__(cursor)
        self._client = cursor
        self._pending: list[str] = ["BEGIN"] if begin else []
        if begin and soft:
            self._pending.append(_SOFT)
        self._opened = list(self._pending)  # what a transaction in which nothing ran would send
        self._begun = begin

    def _bind(self, stmt: Prepared, values: Mapping[str, Any]) -> str:
        return self._client.mogrify(stmt.sql, stmt.params(values))

    def _send(self, statements: list[str]) -> list[Out]:
        """Send what waits, then ``statements``, in one message; the outcomes of ``statements``."""
        skip = len(self._pending)
        text = "; ".join([*self._pending, *statements])
        self._pending = []
        cur = self._client
        cur.execute(text)  # no parameters: sent as it is (the values were bound above)
        out: list[Out] = []
        i = 0
        while True:
            if i >= skip:
                out.append((list(cur.fetchall()) if cur.description else [], int(cur.rowcount)))
            i += 1
            if not cur.nextset():
                return out

    def one(self, stmt: Prepared, **values: Any) -> tuple[Any, ...] | None:
        rows = self._send([self._bind(stmt, values)])[0][0]
        return rows[0] if rows else None

    def all(self, stmt: Prepared, **values: Any) -> list[tuple[Any, ...]]:
        return self._send([self._bind(stmt, values)])[0][0]

    def run(self, stmt: Prepared, **values: Any) -> int:
        return self._send([self._bind(stmt, values)])[0][1]

    def execute(self, sql: str) -> None:
        self._pending.append(sql)

    def many(self, stmt: Prepared, rows: list[dict[str, Any]]) -> None:
        self._pending.extend(self._bind(stmt, r) for r in rows)

    def later(self, stmt: Prepared, **values: Any) -> None:
        self._pending.append(self._bind(stmt, values))

    def batch(self, calls: Sequence[tuple[Prepared, Mapping[str, Any]]]) -> list[Out]:
        return self._send([self._bind(stmt, values) for stmt, values in calls])

    def flush(self) -> None:
        if self._pending:
            self._send([])

    def commit(self) -> None:
        if self._begun:
            if self._pending != self._opened:  # a transaction in which nothing ran needs no round trip
                self._send(["COMMIT"])
            self._pending = []
        else:
            self.flush()

    def rollback(self) -> None:
        self._pending = []
        if self._client.connection.info.transaction_status != _IDLE:
            self._client.execute("ROLLBACK")


@contextmanager
def pg_transaction(engine: Engine, *, begin: bool = True, soft: bool = False) -> Iterator[Txn]:
    """A transaction on a pooled psycopg connection, committed when the block ends, rolled back on error;
    a ``soft`` one commits without waiting for its WAL flush. ``begin=False``: no transaction around the
    statements (each commits alone: one read, one round trip)."""
    from psycopg import ClientCursor, Connection

    raw = engine.raw_connection()
    conn = raw.driver_connection
    assert isinstance(conn, Connection)
    clean = False
    try:
        conn.autocommit = True
        cur = ClientCursor(conn)
        t = PgTxn(cur, begin, soft)
        try:
            yield t
            t.commit()
        except BaseException:
            try:
                t.rollback()
            except Exception:  # noqa: S110 -- the connection is dropped below; the first error is the one to raise
                pass
            raise
        finally:
            cur.close()
        clean = True
    finally:
        if clean or (not conn.closed and conn.info.transaction_status == _IDLE):
            conn.autocommit = False
            raw.close()  # back to the pool
        else:
            raw.invalidate()  # its state is not known: never lent out again
            raw.close()
