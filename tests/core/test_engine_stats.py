"""What the engine reports through its stats port (:mod:`chunkd.core.stats`), over real SQLite and LocalStore."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from chunkd.core.body import Body
from chunkd.core.bytestore import PieceWriter
from chunkd.core.engine import Engine, EngineConfig
from chunkd.core.errors import StorageUnavailable
from chunkd.core.models import Piece
from chunkd.core.principal import Principal
from chunkd.core.stats import EngineStats
from chunkd.core.store import WriteIntent
from chunkd.metadata import open_store
from chunkd.storage.local import LocalStore

ALICE = Principal(kind="user", tenant="t", user="alice")


class Recorder(EngineStats):
    def __init__(self) -> None:
        self.writes: list[tuple[str, int, int]] = []
        self.flushes = 0
        self.takeovers: list[tuple[str, int]] = []
        self.errors: list[str] = []

    def write(self, family: str, new_bytes: int, duplicate_bytes: int, seconds: float) -> None:
        assert seconds >= 0
        self.writes.append((family, new_bytes, duplicate_bytes))

    def flush(self, seconds: float) -> None:
        self.flushes += 1

    def takeover(self, kind: str, count: int = 1) -> None:
        self.takeovers.append((kind, count))

    def storage_error(self, operation: str) -> None:
        self.errors.append(operation)


class BrokenStore(LocalStore):
    """Both write paths fail: the streaming one (open_piece) and the one-hop one for small chunks."""

    async def open_piece(self, ref: str, start: int, *, durable: bool) -> PieceWriter:
        raise StorageUnavailable("the byte store is down")

    def write_piece_blocking(self, ref: str, start: int, data: Sequence[bytes | memoryview], *,
                             durable: bool) -> Piece:
        raise StorageUnavailable("the byte store is down")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    store = open_store(f"sqlite:///{tmp_path / 'meta.db'}", str(tmp_path))
    await store.migrate()
    engine = Engine(store, LocalStore(tmp_path / "store"), EngineConfig(durable=False))
    engine.stats = Recorder()
    yield engine
    await store.close()


async def body(data: bytes) -> Body:
    yield data


async def split(data: bytes) -> Body:
    """A body in two pieces: it takes the streaming write path, not the one-hop one."""
    yield data[:len(data) // 2]
    yield data[len(data) // 2:]


def recorder(engine: Engine) -> Recorder:
    assert isinstance(engine.stats, Recorder)
    return engine.stats


@pytest.mark.anyio
async def test_new_and_duplicate_bytes_and_flushes(engine: Engine) -> None:
    s = await engine.create_session(ALICE, "tus", "ns", "f", 300)
    await engine.write_range(s.id, ALICE, 0, 200, body(os.urandom(200)))
    await engine.write_range(s.id, ALICE, 100, 300, body(os.urandom(200)))  # [100, 200) again
    await engine.write_range(s.id, ALICE, 0, 100, body(os.urandom(100)))  # all of it again
    assert recorder(engine).writes == [("tus", 200, 0), ("tus", 100, 100), ("tus", 0, 100)]
    assert recorder(engine).flushes == 2  # one piece per write that had new bytes
    await engine.commit(s.id, ALICE)
    await engine.write_range(s.id, ALICE, 0, 300, body(os.urandom(300)))  # a retry after the commit
    assert recorder(engine).writes[-1] == ("tus", 0, 300)


@pytest.mark.anyio
async def test_appends_are_reported(engine: Engine) -> None:
    s = await engine.create_session(ALICE, "tus", "ns", "g", 10)
    await engine.append_at(s.id, ALICE, 0, body(b"hello"), 5)
    assert recorder(engine).writes == [("tus", 5, 0)]


@pytest.mark.anyio
async def test_a_claim_whose_lease_ended_is_a_takeover(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chunkd.engine")
    s = await engine.create_session(ALICE, "tus", "ns", "h", 100)
    # a writer that died holding [0, 100): its lease ended long ago
    await engine.store.claim(WriteIntent(s.id, "dead-writer", 0, 100), engine.clock() - 100, 2.0)
    await engine.write_range(s.id, ALICE, 0, 100, body(os.urandom(100)))
    assert recorder(engine).takeovers == [("write", 1)]
    assert recorder(engine).writes == [("tus", 100, 0)]
    # issue 15: a take-over is logged, at INFO, naming the session
    lines = [r.getMessage() for r in caplog.records if r.name == "chunkd.engine" and r.levelno == logging.INFO]
    assert f"take-over: session {s.id}: this request took over 1 claim(s) whose writer's lease had ended" in lines


@pytest.mark.anyio
@pytest.mark.parametrize("whole", [True, False], ids=["one-hop", "streaming"])
async def test_a_byte_store_failure_is_a_storage_error(engine: Engine, tmp_path: Path, whole: bool) -> None:
    engine.storage = BrokenStore(tmp_path / "store")
    s = await engine.create_session(ALICE, "tus", "ns", "k", 100)
    data = os.urandom(100)
    with pytest.raises(StorageUnavailable):
        await engine.write_range(s.id, ALICE, 0, 100, body(data) if whole else split(data))
    assert recorder(engine).errors == ["write"]
    assert recorder(engine).writes == []
    assert (await engine.get_session(s.id)).received == 0  # the claim was released, nothing recorded
