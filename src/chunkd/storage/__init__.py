"""Byte storage: staged session bytes and published objects. Implementations are chosen by name."""

from __future__ import annotations

from chunkd.storage.base import ByteStorage, StagedWriter

__all__ = ["ByteStorage", "StagedWriter", "open_storage"]


def open_storage(url: str, data_dir: str) -> ByteStorage:
    """Open byte storage from a URL: ``local`` (default, under the data directory) or ``file:///path``."""
    from pathlib import Path

    from chunkd.storage.local import LocalStorage

    if url in ("", "local"):
        return LocalStorage(Path(data_dir) / "store")
    if url.startswith("file://"):
        return LocalStorage(Path(url.removeprefix("file://")))
    raise ValueError(f"unknown storage {url!r} (known: local, file:///path)")
