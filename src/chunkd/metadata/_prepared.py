"""Hot-path SQL: Core statements compiled once per dialect and run straight on the DBAPI connection.

Building a Core statement and executing it through a SQLAlchemy ``Connection`` costs 120-250 µs of
Python per statement (construction, cache key, result objects, transaction events), ten times what the
statement itself costs on SQLite, and a 64 KiB chunk runs about a dozen of them
(``bench/README.md``, section 3). The statements stay written in Core, so SQLite and PostgreSQL share
one text; only their execution skips the per-call machinery. The columns involved need no type
conversion on either driver (strings, integers, floats).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.sql.compiler import SQLCompiler


class Prepared:
    """One Core statement compiled for one dialect. Parameters are passed by bindparam name."""

    def __init__(self, stmt: sa.sql.ClauseElement, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self._order = compiled.positiontup  # positional paramstyles (SQLite's qmark); None for psycopg's
        # values written into the statement itself (LIMIT 1, start = 0); the rest must be passed
        self._defaults = {k: v for k, v in compiled.params.items() if v is not None}
        # the positional values in one C call (a generator per statement cost ~1.5 µs, 15 statements a chunk)
        self._pick = _picker(tuple(self._order or ()))

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        merged = {**self._defaults, **values} if self._defaults else values
        if self._order is None:
            return merged
        return self._pick(merged)


def _picker(order: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """The values of ``order``'s names as a tuple (``itemgetter`` of one name returns the bare value)."""
    if len(order) > 1:
        return itemgetter(*order)
    if order:
        name = order[0]
        return lambda m: (m[name],)
    return lambda m: ()


Rows = list[tuple[Any, ...]]
Out = tuple[Rows, int]
"""One statement's outcome in a :meth:`Txn.batch`: its rows (none for a write) and the rows it touched (a
plain tuple, not a NamedTuple: two are made per statement on the per-chunk path, and building a NamedTuple
costs a Python-level call)."""


class Txn:
    """Statements inside one transaction on a raw DBAPI connection, each sent when it is called.

    :class:`chunkd.metadata._pg_txn.PgTxn` sends them in fewer round trips: a write whose count nobody reads
    (``later``, ``many``, ``execute``) waits for the next statement that returns something or for the
    commit, and a ``batch`` goes in one message. Code written against this class means the same on both:
    statements run in the order they were called, and an error in any of them fails the transaction (it may
    be raised by a later call of the same transaction than the one that caused it).
    """

    def __init__(self, cursor: Any) -> None:
        self._cur = cursor

    def one(self, stmt: Prepared, **values: Any) -> tuple[Any, ...] | None:
        self._cur.execute(stmt.sql, stmt.params(values))
        row: tuple[Any, ...] | None = self._cur.fetchone()
        return row

    def all(self, stmt: Prepared, **values: Any) -> list[tuple[Any, ...]]:
        self._cur.execute(stmt.sql, stmt.params(values))
        return list(self._cur.fetchall())

    def run(self, stmt: Prepared, **values: Any) -> int:
        """Execute a write; the number of rows it touched."""
        self._cur.execute(stmt.sql, stmt.params(values))
        return int(self._cur.rowcount)

    def execute(self, sql: str) -> None:
        """A statement without parameters (SAVEPOINT and the like)."""
        self._cur.execute(sql)

    def many(self, stmt: Prepared, rows: list[dict[str, Any]]) -> None:
        self._cur.executemany(stmt.sql, [stmt.params(r) for r in rows])

    def later(self, stmt: Prepared, **values: Any) -> None:
        """A write whose count is not needed: it runs before any statement called after it."""
        self._cur.execute(stmt.sql, stmt.params(values))

    def batch(self, calls: Sequence[tuple[Prepared, Mapping[str, Any]]]) -> list[Out]:
        """Run every statement of ``calls`` in order; each one's rows and count. Each statement sees what the
        ones before it did (on PostgreSQL each takes its own snapshot, after the row locks of those before)."""
        cur = self._cur
        out: list[Out] = []
        for stmt, values in calls:
            cur.execute(stmt.sql, stmt.params(values))
            out.append((cur.fetchall(), cur.rowcount))  # sqlite3: [] for a write, -1 for a read's count
        return out

    def flush(self) -> None:
        """Send what waits (``later``): its errors are raised here, not by a later call."""


@contextmanager
def transaction(engine: Engine, begin: str | None) -> Iterator[Txn]:
    """A transaction on a pooled DBAPI connection (see ``on_connection``), returned to the pool after."""
    raw = engine.raw_connection()
    try:
        with on_connection(raw, begin) as t:
            yield t
    finally:
        raw.close()  # back to the pool


@contextmanager
def on_connection(raw: Any, begin: str | None) -> Iterator[Txn]:
    """A transaction on the DBAPI connection ``raw``, committed when the block ends, rolled back on error.

    ``begin`` is the statement that opens it on SQLite (whose connections run with the driver's own
    transaction handling off); None for drivers that open one implicitly (psycopg).
    """
    cur = raw.cursor()
    try:
        if begin is not None:
            cur.execute(begin)
        yield Txn(cur)
    except BaseException:
        raw.rollback()
        raise
    else:
        raw.commit()
    finally:
        cur.close()


__all__ = ["Out", "Prepared", "Rows", "Txn", "on_connection", "transaction"]
