"""Factories the byte-store registry (:mod:`chunkd.storage`) points at, for the built-in backends."""

from __future__ import annotations

from pathlib import Path

from chunkd.storage.local import LocalStore
from chunkd.storage.memory import MemoryStore


def local_in_data_dir(url: str, data_dir: Path) -> LocalStore:
    if url not in ("local", "local:"):
        raise ValueError(f"the local store takes no options ({url!r}); use file:///path for another directory")
    return LocalStore(data_dir / "store")


def local_at_path(url: str, data_dir: Path) -> LocalStore:
    if not url.startswith("file://"):
        raise ValueError(f"expected file:///path, not {url!r}")
    return LocalStore(Path(url.removeprefix("file://")))


def memory(url: str, data_dir: Path) -> MemoryStore:
    return MemoryStore()
