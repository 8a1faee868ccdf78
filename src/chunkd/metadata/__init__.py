"""Session metadata: records, received ranges and write claims. Implementations are chosen by URL."""

from __future__ import annotations

from chunkd.metadata.base import Claim, SessionStore

__all__ = ["Claim", "SessionStore", "open_store"]


def open_store(url: str, data_dir: str) -> SessionStore:
    """Open a metadata store: ``sqlite`` (default, ``DATA_DIR/chunkd.db``), ``sqlite:///path`` or
    ``postgresql://...`` (needs the ``postgres`` extra: ``pip install 'chunkd[postgres]'``)."""
    from pathlib import Path

    from chunkd.metadata.sql import SqlSessionStore

    if url in ("", "sqlite"):
        url = f"sqlite:///{Path(data_dir).resolve() / 'chunkd.db'}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://")):
        raise ValueError(f"unknown metadata store {url!r} (known: sqlite, sqlite:///path, postgresql://...)")
    return SqlSessionStore(url)
