"""Metadata stores (implementations of the core's session and resource ports), chosen by URL.

* ``sqlite`` (default): ``DATA_DIR/chunkd.db``; ``sqlite:///relative/path`` or ``sqlite:////abs/path``.
* ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?options]`` (``postgres://`` works too), e.g.
  ``chunkd serve --metadata postgresql://postgres@127.0.0.1:5432/chunkd``. The database must exist;
  chunkd creates its tables on start. Needs the ``postgres`` extra (``pip install 'chunkd[postgres]'``,
  psycopg 3), which is the driver used: ``postgresql+psycopg://`` URLs are accepted unchanged. Several
  server processes, on several machines, may share one database safely.

``durable=False`` (``serve --no-durable``) lets SQLite commit without fsyncing its WAL, matching
chunks acknowledged without fdatasync: a power loss may forget the last acknowledged chunks, a crash of
the process loses nothing. PostgreSQL keeps its own settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chunkd.metadata.sql import SqlSessionStore

__all__ = ["open_store"]

_POSTGRES_HINT = "pip install 'chunkd[postgres]'"


def open_store(url: str, data_dir: str, *, durable: bool = True) -> SqlSessionStore:
    """Open the metadata store named by ``url`` (``--metadata`` / ``CHUNKD_METADATA``). Raises
    ValueError for an unknown kind, RuntimeError with an install hint when the driver is missing."""
    if url in ("", "sqlite"):
        url = f"sqlite:///{Path(data_dir).resolve() / 'chunkd.db'}"
    for alias in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(alias):
            url = "postgresql+psycopg://" + url.removeprefix(alias)
    if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://")):
        raise ValueError(f"unknown metadata store {url!r} (known: sqlite, sqlite:///path, postgresql://...)")
    if url.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(f"PostgreSQL metadata needs psycopg; install it with: {_POSTGRES_HINT}") from exc
    if url.startswith("postgresql"):
        from chunkd.metadata._pg_held import PgSessionStore

        return PgSessionStore(url, durable=durable)
    from chunkd.metadata.sql import SqlSessionStore

    return SqlSessionStore(url, durable=durable)
