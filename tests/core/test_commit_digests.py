"""Commits checked against expected digests (chunkd.core.digests): over real SQLite and LocalStore, with a second
Engine standing for another process that finishes a commit the first one left behind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from chunkd.core.body import Body
from chunkd.core.digests import DigestMismatch, digests_of
from chunkd.core.engine import Engine, EngineConfig
from chunkd.core.errors import SessionGone
from chunkd.core.models import Session, SessionState
from chunkd.core.principal import Principal
from chunkd.core.store import SessionChanges
from chunkd.metadata import open_store
from chunkd.storage.local import LocalStore

ALICE = Principal(kind="user", tenant="t", user="alice")
DATA = os.urandom(3 << 20)  # several hashing batches


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def expected(session: Session) -> Mapping[str, bytes]:
    return {k: bytes.fromhex(v) for k, v in session.extra.get("want", {}).items()}


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[Engine, Engine, Clock]]:
    clock = Clock()
    made = []
    for _ in range(2):
        store = open_store(f"sqlite:///{tmp_path / 'meta.db'}", str(tmp_path))
        await store.migrate()
        engine = Engine(store, LocalStore(tmp_path / "store"), EngineConfig(durable=False), clock=clock)
        engine.expect_digests("fam", expected)
        made.append(engine)
    yield made[0], made[1], clock
    for engine in made:
        await engine.store.close()


async def body(data: bytes) -> Body:
    for i in range(0, len(data), 1 << 16):
        yield data[i:i + (1 << 16)]


async def _session(engine: Engine, want: dict[str, str], *, commit: bool = True) -> Session:
    return await engine.create_session(ALICE, "fam", "ns", f"k{os.urandom(4).hex()}", len(DATA),
                                       commit_on_complete=commit, extra={"want": want})


@pytest.mark.anyio
async def test_matching_digests_commit(engines: tuple[Engine, Engine, Clock]) -> None:
    engine = engines[0]
    s = await _session(engine, {"sha256": hashlib.sha256(DATA).hexdigest(), "sha512": hashlib.sha512(DATA).hexdigest()})
    done = (await engine.write_range(s.id, ALICE, 0, len(DATA), body(DATA))).session
    assert done.state is SessionState.COMMITTED
    assert b"".join([p async for p in engine.read_object("ns", s.key, 0, len(DATA))]) == DATA


@pytest.mark.anyio
async def test_a_mismatch_refuses_the_commit_and_cancels_the_session(engines: tuple[Engine, Engine, Clock]) -> None:
    engine = engines[0]
    s = await _session(engine, {"sha256": hashlib.sha256(b"other").hexdigest()})
    with pytest.raises(DigestMismatch):
        await engine.write_range(s.id, ALICE, 0, len(DATA), body(DATA))
    assert await engine.storage.stat("ns", s.key) is None  # the assembled object is gone again
    with pytest.raises(SessionGone):
        await engine.get_session(s.id)
    assert (await engine.store.get(s.id)).state is SessionState.DELETED  # type: ignore[union-attr]
    assert isinstance(engine.storage, LocalStore) and not (engine.storage.staging / s.storage_ref).exists()


@pytest.mark.anyio
async def test_another_process_finishing_an_interrupted_commit_checks_too(
        engines: tuple[Engine, Engine, Clock]) -> None:
    first, second, clock = engines
    s = await _session(first, {"sha256": hashlib.sha256(b"other").hexdigest()}, commit=False)
    s = (await first.write_range(s.id, ALICE, 0, len(DATA), body(DATA))).session
    # the first process recorded COMMITTING and died before publishing
    await first.change(s, SessionChanges(state=SessionState.COMMITTING, modified_at=clock.now))
    clock.now += 10
    with pytest.raises(SessionGone):  # the take-over on read refuses it: the reader sees the upload gone
        await second.get_session(s.id)
    assert await second.storage.stat("ns", s.key) is None


@pytest.mark.anyio
async def test_digests_of_hashes_every_chunk() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(DATA), 1000):
            yield DATA[i:i + 1000]
    assert await digests_of(chunks(), ["sha256", "md5"]) == {"sha256": hashlib.sha256(DATA).digest(),
                                                             "md5": hashlib.md5(DATA).digest()}
