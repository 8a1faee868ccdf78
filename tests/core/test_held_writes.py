"""Small writes held in one transaction on PostgreSQL (``core.store.HeldWrites``, ``metadata/_pg_held.py``):
one commit per chunk where SQLite takes two; the session's row lock stands in for the claim row, so a second
writer of the same range waits while the first writes and then finds the range received; a second creator
of the same new session waits on the key, claims again and writes nothing over the first one's bytes.

Writers are paused inside their byte-store write (an Event, not a timer); "still waiting" is checked after
the paused writer had ample time to be overtaken, which a broken lock would do.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from chunkd.core.engine import Engine, EngineConfig
from chunkd.core.errors import StorageUnavailable
from chunkd.core.store import HeldWrites
from chunkd.metadata import _sql_base, open_store
from chunkd.storage.local import LocalStore
from tests.conformance.metadata_suite import _truncate, pg_url
from tests.core import test_engine as base
from tests.core.test_engine import ALICE, NS, FakeClock, body, staged

clock, pg_database = base.clock, base.pg_database  # their fixtures


class PausingStore(LocalStore):
    """Local files; the first write whose first byte is ``pause_on`` waits for ``go`` after setting
    ``inside`` (later ones do not)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.pause_on: int | None = None
        self.inside, self.go = threading.Event(), threading.Event()

    def write_piece_blocking(self, ref: str, start: int, data: Sequence[bytes | memoryview], **kw: Any) -> Any:
        if self.pause_on is not None and data and bytes(data[0][:1]) == bytes([self.pause_on]):
            self.pause_on = None
            self.inside.set()
            assert self.go.wait(30), "never released"
        return super().write_piece_blocking(ref, start, data, **kw)


@pytest.fixture(params=["sqlite", "postgresql"])
async def made(request: pytest.FixtureRequest, tmp_path: Path,
               clock: FakeClock) -> AsyncIterator[tuple[Engine, PausingStore, str]]:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    if request.param == "postgresql":
        url = pg_url(request.getfixturevalue("pg_database"))
    store = open_store(url, str(tmp_path))
    await store.migrate()
    if request.param == "postgresql":
        await _truncate(store)
    storage = PausingStore(tmp_path / "store")
    engine = Engine(store, storage, EngineConfig(durable=False), clock=clock)
    try:
        yield engine, storage, request.param
    finally:
        storage.go.set()
        await store.close()


@pytest.mark.anyio
async def test_a_small_chunk_commits_once_on_postgresql(made: tuple[Engine, PausingStore, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _, backend = made
    assert isinstance(engine.store, HeldWrites) == (backend == "postgresql")
    s = await engine.create_session(ALICE, "tus", NS, "once", 30)
    commits: list[int] = []
    monkeypatch.setattr(engine.store, "on_commit", lambda: commits.append(1))
    for i in range(3):
        result = await engine.write_range(s.id, ALICE, i * 10, (i + 1) * 10, body(bytes([65 + i]) * 10))
        assert result.new_bytes == 10
    assert len(commits) == (3 if backend == "postgresql" else 6)  # claim + record on SQLite
    assert await staged(engine, s.id, 30) == b"A" * 10 + b"B" * 10 + b"C" * 10
    assert (await engine.get_session(s.id)).received == 30
    assert (await engine.store.ranges(s.id)).contains(0, 30)


async def _first_paused(engine: Engine, storage: PausingStore, first: Callable[[], Any],
                        second: Callable[[], Any]) -> tuple[Any, Any, bool]:
    """Run ``first`` until it is inside its write, then ``second``; report whether ``second`` finished
    while ``first`` was still paused, then let ``first`` go."""
    out: dict[str, Any] = {}

    async def run(name: str, call: Callable[[], Any]) -> None:
        try:
            out[name] = await call()
        except Exception as exc:
            out[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "first", first)
        with anyio.fail_after(30):
            while not storage.inside.is_set():
                await anyio.sleep(0.005)
        tg.start_soon(run, "second", second)
        await anyio.sleep(0.5)  # long enough for an unblocked second writer to finish
        overtook = "second" in out
        storage.go.set()
    return out["first"], out["second"], overtook


@pytest.mark.parametrize("made", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_a_second_writer_of_a_held_range_waits_and_writes_nothing(
        made: tuple[Engine, PausingStore, str]) -> None:
    engine, storage, _ = made
    s = await engine.create_session(ALICE, "sf", NS, "race", 10)
    storage.pause_on = ord("A")
    first, second, overtook = await _first_paused(
        engine, storage, lambda: engine.write_range(s.id, ALICE, 0, 10, body(b"A" * 10)),
        lambda: engine.write_range(s.id, ALICE, 0, 10, body(b"B" * 10)))
    assert not overtook, second
    assert first.new_bytes == 10 and second.new_bytes == 0, (first, second)
    assert await staged(engine, s.id, 10) == b"A" * 10  # the recorded bytes were never overwritten


@pytest.mark.parametrize("made", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_a_second_creator_of_a_new_session_waits_and_writes_nothing(
        made: tuple[Engine, PausingStore, str]) -> None:
    engine, storage, _ = made
    new = engine.new_session(ALICE, "sf", NS, "created", 10, session_id="same-id")
    storage.pause_on = ord("A")
    first, second, overtook = await _first_paused(
        engine, storage, lambda: engine.write_range(new.id, ALICE, 0, 10, body(b"A" * 10), create=new),
        lambda: engine.write_range(new.id, ALICE, 0, 10, body(b"B" * 10), create=new))
    assert not overtook, second
    assert first.new_bytes == 10 and second.new_bytes == 0, (first, second)
    assert await staged(engine, new.id, 10) == b"A" * 10
    assert (await engine.get_session(new.id)).received == 10


async def _pg_engine(url: str, tmp_path: Path, clock: FakeClock) -> tuple[Engine, PausingStore]:
    store = open_store(url, str(tmp_path))
    await store.migrate()
    await _truncate(store)
    storage = PausingStore(tmp_path / "store")
    return Engine(store, storage, EngineConfig(durable=False), clock=clock), storage


async def _while_paused(storage: PausingStore, first: Callable[[], Any], during: Callable[[], Any]) -> Any:
    """Run ``first`` until it is paused inside its write, then ``during`` (to its end), then let ``first`` go;
    ``first``'s result, or the error it raised."""
    out: dict[str, Any] = {}

    async def run_first() -> None:
        try:
            out["first"] = await first()
        except Exception as exc:
            out["first"] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_first)
        with anyio.fail_after(30):  # a hang guard, not a speed assertion
            while not storage.inside.is_set():
                await anyio.sleep(0.005)
            await during()
        storage.go.set()
    return out["first"]


@pytest.mark.anyio
async def test_a_writer_waiting_behind_a_stalled_held_write_gives_up(
        pg_database: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock wait is bounded (``LOCK_TIMEOUT_MS``): the waiting writer gets StorageUnavailable (a 503,
    retry); the stalled one still records its bytes once it goes on."""
    monkeypatch.setattr(_sql_base, "LOCK_TIMEOUT_MS", 300)
    engine, storage = await _pg_engine(pg_url(pg_database), tmp_path, clock)
    try:
        s = await engine.create_session(ALICE, "sf", NS, "stalled", 20)
        storage.pause_on = ord("A")

        async def waiting() -> None:
            with pytest.raises(StorageUnavailable):  # a different range: the session's row is what waits
                await engine.write_range(s.id, ALICE, 10, 20, body(b"B" * 10))

        first = await _while_paused(storage, lambda: engine.write_range(s.id, ALICE, 0, 10, body(b"A" * 10)),
                                    waiting)
        assert first.new_bytes == 10
        assert await staged(engine, s.id, 10) == b"A" * 10
        assert (await engine.write_range(s.id, ALICE, 10, 20, body(b"B" * 10))).session.complete
    finally:
        storage.go.set()
        await engine.store.close()


@pytest.mark.anyio
async def test_a_held_write_whose_process_hangs_is_ended_by_the_server(
        pg_database: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """``IDLE_IN_TRANSACTION_MS``: the server ends a transaction left idle (its writer hung inside the
    write), which releases the session, so the client's retry of the chunk is taken; the hung write fails
    when it goes on and records nothing. (Its bytes still land in the staging area: had the retry carried
    other bytes for the range, they would be overwritten -- the window a claim's lease has after ``lease``
    seconds, here only after a write hung for ``IDLE_IN_TRANSACTION_MS``.)"""
    monkeypatch.setattr(_sql_base, "IDLE_IN_TRANSACTION_MS", 300)
    engine, storage = await _pg_engine(pg_url(pg_database), tmp_path, clock)
    try:
        s = await engine.create_session(ALICE, "sf", NS, "hung", 10)
        storage.pause_on = ord("A")

        async def retry() -> None:  # the session is free again once the server ended the idle transaction
            assert (await engine.write_range(s.id, ALICE, 0, 10, body(b"A" * 10))).new_bytes == 10

        first = await _while_paused(storage, lambda: engine.write_range(s.id, ALICE, 0, 10, body(b"A" * 10)),
                                    retry)
        assert isinstance(first, StorageUnavailable), first
        assert await staged(engine, s.id, 10) == b"A" * 10
        assert (await engine.get_session(s.id)).received == 10
    finally:
        storage.go.set()
        await engine.store.close()
