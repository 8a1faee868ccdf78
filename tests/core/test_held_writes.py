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
from chunkd.core.store import HeldWrites
from chunkd.metadata import open_store
from chunkd.storage.local import LocalStore
from tests.conformance.metadata_suite import _truncate, pg_url
from tests.core import test_engine as base
from tests.core.test_engine import ALICE, NS, FakeClock, body, staged

clock, pg_database = base.clock, base.pg_database  # their fixtures


class PausingStore(LocalStore):
    """Local files; a write whose first byte is ``pause_on`` waits for ``go`` after setting ``inside``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.pause_on: int | None = None
        self.inside, self.go = threading.Event(), threading.Event()

    def write_piece_blocking(self, ref: str, start: int, data: Sequence[bytes | memoryview], **kw: Any) -> Any:
        if self.pause_on is not None and data and bytes(data[0][:1]) == bytes([self.pause_on]):
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
