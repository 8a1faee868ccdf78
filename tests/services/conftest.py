"""Domain services in-process over a real SQLite store and local files, with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chunkd.core.engine import Engine, EngineConfig
from chunkd.metadata import open_store
from chunkd.services.blobs import BlobServices
from chunkd.storage.local import LocalStore


class FakeClock:
    """The engine's clock, moved by hand; far from the real time, so a service that read ``time.time()``
    instead would be found out."""

    def __init__(self) -> None:
        self.now = 1_000_000.5

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Engine]:
    store = open_store(f"sqlite:///{tmp_path / 'meta.db'}", str(tmp_path))
    await store.migrate()
    yield Engine(store, LocalStore(tmp_path / "store"), EngineConfig(durable=False), clock=clock)
    await store.close()


@pytest.fixture
def blob(engine: Engine) -> BlobServices:
    return BlobServices.over(engine)
