"""Session metadata: records, received ranges and write claims. Implementations are chosen by URL."""

from __future__ import annotations

from chunkd.metadata.base import Claim, SessionStore

__all__ = ["Claim", "SessionStore", "open_store"]


def open_store(url: str, data_dir: str, *, durable: bool = True) -> SessionStore:
    """Open a metadata store from the ``--metadata`` / ``CHUNKD_METADATA`` setting.

    * ``sqlite`` (default): ``DATA_DIR/chunkd.db``; ``sqlite:///relative/path`` or ``sqlite:////abs/path``.
    * ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?options]`` (``postgres://`` works too), e.g.
      ``chunkd serve --metadata postgresql://postgres@127.0.0.1:5432/chunkd``. The database must exist;
      chunkd creates its tables on start. Needs the ``postgres`` extra (``pip install 'chunkd[postgres]'``,
      psycopg 3), which is the driver used: ``postgresql+psycopg://`` URLs are accepted unchanged. Several
      server processes may share one database (and one byte store) safely.

    ``durable=False`` (``serve --no-durable``) lets SQLite commit without fsyncing its WAL, matching
    chunks acknowledged without fdatasync: a power loss may forget the last acknowledged chunks, a
    crash of the process loses nothing. PostgreSQL keeps its own settings.
    """
    from pathlib import Path

    from chunkd.metadata.sql import SqlSessionStore

    if url in ("", "sqlite"):
        url = f"sqlite:///{Path(data_dir).resolve() / 'chunkd.db'}"
    for alias in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(alias):
            url = "postgresql+psycopg://" + url.removeprefix(alias)
    if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://")):
        raise ValueError(f"unknown metadata store {url!r} (known: sqlite, sqlite:///path, postgresql://...)")
    return SqlSessionStore(url, durable=durable)
