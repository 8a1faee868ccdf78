"""The Engine in-process over real SQLite and LocalStore; two Engine objects stand for two processes."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from chunkd.core.body import Body
from chunkd.core.engine import Engine, EngineConfig
from chunkd.core.errors import (
    LengthMismatch,
    PathConflict,
    PermissionDenied,
    SessionConflict,
    SessionGone,
    SessionIncomplete,
    WriteInterrupted,
)
from chunkd.core.models import Piece, SessionState
from chunkd.core.principal import Principal
from chunkd.core.store import SessionChanges, WriteIntent
from chunkd.metadata import open_store
from chunkd.storage.local import LocalStore
from tests.conformance.metadata_suite import _truncate, pg_database, pg_url  # noqa: F401  (fixture)

ALICE = Principal(kind="user", tenant="t", user="alice")
BOB = Principal(kind="user", tenant="t", user="bob")
NS = "test"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engines(request: pytest.FixtureRequest, tmp_path: Path,
                  clock: FakeClock) -> AsyncIterator[Callable[..., Engine]]:
    """Make Engines on one data directory, each with its own store and storage objects. SQLite, or
    PostgreSQL for tests parametrised with ``backend="postgresql"``."""
    made: list[Engine] = []
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    if getattr(request.node, "callspec", None) and request.node.callspec.params.get("backend") == "postgresql":
        url = pg_url(request.getfixturevalue("pg_database"))
        store = open_store(url, str(tmp_path))
        await store.migrate()
        await _truncate(store)
        await store.close()

    async def make(**config: object) -> Engine:
        store = open_store(url, str(tmp_path))
        await store.migrate()
        engine = Engine(store, LocalStore(tmp_path / "store"),
                        EngineConfig(durable=False, **config), clock=clock)  # type: ignore[arg-type]
        made.append(engine)
        return engine

    yield make  # type: ignore[misc]
    for engine in made:
        await engine.store.close()


@pytest.fixture
async def engine(engines: Callable[..., Engine]) -> Engine:
    return await engines()  # type: ignore[misc, no-any-return]


async def body(data: bytes, piece: int = 4096) -> Body:
    for i in range(0, len(data), piece):
        yield data[i:i + piece]
        await anyio.sleep(0)


async def read(engine: Engine, key: str) -> bytes:
    return b"".join([p async for p in engine.read_object(NS, key, 0, 1 << 40)])


async def staged(engine: Engine, session_id: str, length: int) -> bytes:
    """The session's staged bytes as local storage holds them (one sparse file per session)."""
    session = await engine.get_session(session_id)
    assert isinstance(engine.storage, LocalStore)
    return (engine.storage.staging / session.storage_ref).read_bytes()[:length].ljust(length, b"\0")


def stage_exists(engine: Engine, ref: str) -> bool:
    assert isinstance(engine.storage, LocalStore)
    return (engine.storage.staging / ref).exists()


# -- writing ----------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_partly_overlapping_chunk_stores_only_the_new_part(engine: Engine) -> None:
    s = await engine.create_session(ALICE, "test", NS, "f", 300)
    first = os.urandom(200)
    assert (await engine.write_range(s.id, ALICE, 0, 200, body(first, 64))).new_bytes == 200
    second = b"X" * 200  # different bytes for the overlap [100, 200): they must be dropped
    result = await engine.write_range(s.id, ALICE, 100, 300, body(second, 64))
    assert result.new_bytes == 100
    assert result.session.received == 300 and result.session.complete
    await engine.commit(s.id, ALICE)
    assert await read(engine, "f") == first + b"X" * 100


@pytest.mark.anyio
async def test_identical_retry_is_a_no_op_success(engine: Engine) -> None:
    s = await engine.create_session(ALICE, "test", NS, "f", 100)
    data = os.urandom(100)
    await engine.write_range(s.id, ALICE, 0, 50, body(data[:50]))
    again = await engine.write_range(s.id, ALICE, 0, 50, body(data[:50]))
    assert again.new_bytes == 0 and again.session.received == 50
    assert await engine.missing(again.session) == [(50, 100)]
    await engine.write_range(s.id, ALICE, 50, 100, body(data[50:]))
    await engine.commit(s.id, ALICE)
    # a retry after the commit (its response was lost) still succeeds
    late = await engine.write_range(s.id, ALICE, 50, 100, body(data[50:]))
    assert late.new_bytes == 0
    assert await read(engine, "f") == data


@pytest.mark.anyio
@pytest.mark.parametrize("size", [99, 101, 0])
async def test_body_length_mismatch_records_nothing(engine: Engine, size: int) -> None:
    s = await engine.create_session(ALICE, "test", NS, "f", 200)
    with pytest.raises(LengthMismatch):
        await engine.write_range(s.id, ALICE, 0, 100, body(b"a" * size, 30))
    after = await engine.get_session(s.id)
    assert after.received == 0 and list(await engine.received(after)) == []
    # the claim was released: the same range can be written right away
    assert (await engine.write_range(s.id, ALICE, 0, 100, body(b"b" * 100))).new_bytes == 100


@pytest.mark.anyio
async def test_other_principal_may_not_write(engine: Engine) -> None:
    s = await engine.create_session(ALICE, "test", NS, "f", 10)
    with pytest.raises(PermissionDenied):
        await engine.write_range(s.id, BOB, 0, 10, body(b"x" * 10))
    assert (await engine.get_session(s.id)).received == 0


def pattern(writer: int, start: int, end: int) -> bytes:
    """Content that tells, at every position, which writer wrote it."""
    return bytes((p * 7 + writer * 100) % 251 for p in range(start, end))


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_two_processes_overlapping_writes_never_overwrite_acknowledged_bytes(
        engines: Callable[..., Engine], backend: str) -> None:
    one, two = await engines(), await engines()  # type: ignore[misc]
    total = 96_000
    s = await one.create_session(ALICE, "test", NS, "shared", total)
    acked: list[tuple[int, int, bytes]] = []

    async def writer(engine: Engine, n: int, ranges: list[tuple[int, int]]) -> None:
        for start, end in ranges:
            await engine.write_range(s.id, ALICE, start, end, body(pattern(n, start, end), 1000))
            # what the store holds for this range right after the acknowledgement must never change
            acked.append((start, end, await staged(engine, s.id, total)))

    step = 8000
    ranges_one = [(i, min(i + 2 * step, total)) for i in range(0, total, step)]
    ranges_two = [(i + step // 2, min(i + step // 2 + 3 * step, total)) for i in range(0, total, step)][::-1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer, one, 1, ranges_one)
        tg.start_soon(writer, two, 2, ranges_two)
    final = await staged(two, s.id, total)
    for start, end, snapshot in acked:
        assert final[start:end] == snapshot[start:end]
    for p in range(total):
        assert final[p] in (pattern(1, p, p + 1)[0], pattern(2, p, p + 1)[0])
    session = await one.get_session(s.id)
    assert session.received == total
    await two.commit(s.id, ALICE)
    assert await read(one, "shared") == final


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("whole", [True, False])
async def test_claim_takeover_after_lease_expiry(engines: Callable[..., Engine], clock: FakeClock,
                                                 backend: str, whole: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chunkd.engine")
    # renew_interval=0: the stalled writer checks its claim before every disk write, including the final flush
    one = await engines(lease=30.0, renew_interval=0.0)  # type: ignore[misc]
    two = await engines(lease=30.0, renew_interval=0.0)  # type: ignore[misc]
    size = 100
    s = await one.create_session(ALICE, "test", NS, "f", size)
    resume = anyio.Event()
    stalled = anyio.Event()

    async def stalling_body() -> Body:
        if whole:
            yield b"A" * size  # every byte arrived (in the body's first piece)...
        else:
            yield b"A" * 50  # a body still arriving: written under its claim
            yield b"A" * 50
        stalled.set()
        await resume.wait()  # ...but the body's end comes after the lease ran out

    outcome: list[BaseException] = []

    async def slow_writer() -> None:
        try:
            await one.write_range(s.id, ALICE, 0, 100, stalling_body())
        except BaseException as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_writer)
        await stalled.wait()
        two_cfg_wait = anyio.fail_after(10)
        with two_cfg_wait:
            clock.now += 31  # the first claim's lease is over: the next writer takes it over
            result = await two.write_range(s.id, ALICE, 0, size, body(b"B" * size))
        assert result.new_bytes == size
        resume.set()
    if whole:
        # a small body that arrived whole is read before its claim (core/small_writes.py): the stalled writer
        # held nothing, and its late bytes are a retry of a received range (a no-op success)
        assert outcome == []
    else:
        assert len(outcome) == 1 and isinstance(outcome[0], WriteInterrupted)
    assert await staged(one, s.id, size) == b"B" * size
    assert (await one.get_session(s.id)).received == size
    if not whole:  # issue 15: both sides of the take-over are logged
        lines = [r.getMessage() for r in caplog.records if r.name == "chunkd.engine"]
        assert f"take-over: session {s.id}: this request took over 1 claim(s) whose writer's lease had ended" in lines
        assert (f"take-over: a newer request took bytes 0-{size} of session {s.id} from this one after its 30 s "
                "lease ended; this request stops") in lines


# -- commit ---------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_commit_only_when_complete_atomic_idempotent_and_without_copy(engine: Engine) -> None:
    old = await engine.create_session(ALICE, "test", NS, "pkg/file", 5)
    await engine.write_range(old.id, ALICE, 0, 5, body(b"older"))
    await engine.commit(old.id, ALICE)
    data = os.urandom(1 << 20)
    s = await engine.create_session(ALICE, "test", NS, "pkg/file", len(data))
    await engine.write_range(s.id, ALICE, 0, 1000, body(data[:1000]))
    with pytest.raises(SessionIncomplete):
        await engine.commit(s.id, ALICE)
    await engine.write_range(s.id, ALICE, 1000, len(data), body(data[1000:], 65536))
    assert isinstance(engine.storage, LocalStore)
    inode = os.stat(engine.storage.staging / s.storage_ref).st_ino
    assert await read(engine, "pkg/file") == b"older"  # readers see the old file until the commit
    committed = await engine.commit(s.id, ALICE)
    assert committed.state is SessionState.COMMITTED
    assert os.stat(engine.storage.objects / NS / "pkg" / "file").st_ino == inode  # renamed, not copied
    assert await read(engine, "pkg/file") == data
    again = await engine.commit(s.id, ALICE)
    assert again.state is SessionState.COMMITTED and again.version == committed.version
    assert await read(engine, "pkg/file") == data


@pytest.mark.anyio
async def test_zero_byte_commit(engine: Engine) -> None:
    s = await engine.create_session(ALICE, "test", NS, "empty", 0)
    await engine.commit(s.id, ALICE)
    info = await engine.stat_object(NS, "empty")
    assert info.size == 0 and await read(engine, "empty") == b""


@pytest.mark.anyio
async def test_commit_onto_a_folder_fails_and_leaves_the_session_usable(engine: Engine) -> None:
    await engine.put_object(NS, "dir/inside", body(b"x"))
    s = await engine.create_session(ALICE, "test", NS, "dir", 3)
    await engine.write_range(s.id, ALICE, 0, 3, body(b"abc"))
    with pytest.raises(PathConflict):
        await engine.commit(s.id, ALICE)
    assert (await engine.get_session(s.id)).state is SessionState.OPEN
    await engine.delete_session(s.id, ALICE)
    assert await read(engine, "dir/inside") == b"x"


# -- expiry and deletion --------------------------------------------------------------------------
@pytest.mark.anyio
async def test_sweep_expires_idle_sessions_and_their_bytes(engines: Callable[..., Engine],
                                                           clock: FakeClock) -> None:
    engine = await engines(session_ttl=60.0)  # type: ignore[misc]
    idle = await engine.create_session(ALICE, "test", NS, "idle", 100)
    await engine.write_range(idle.id, ALICE, 0, 50, body(b"x" * 50))
    busy = await engine.create_session(ALICE, "test", NS, "busy", 100)
    clock.now += 50
    await engine.write_range(busy.id, ALICE, 0, 50, body(b"y" * 50))  # a write extends the lifetime
    clock.now += 20
    assert await engine.sweep() == 1
    assert not stage_exists(engine, idle.storage_ref)
    with pytest.raises(SessionGone):
        await engine.get_session(idle.id)
    assert (await engine.get_session(busy.id)).received == 50
    assert await engine.sweep() == 0


@pytest.mark.anyio
async def test_expired_session_id_can_be_reused_before_the_sweep(engines: Callable[..., Engine],
                                                                 clock: FakeClock) -> None:
    engine = await engines(session_ttl=60.0)  # type: ignore[misc]
    sid = "reused-id"
    first = await engine.ensure_session(ALICE, "test", sid, NS, "k", 10)
    await engine.write_range(sid, ALICE, 0, 5, body(b"aaaaa"))
    clock.now += 61
    again = await engine.ensure_session(ALICE, "test", sid, NS, "k", 10)
    assert again.received == 0 and again.storage_ref != first.storage_ref
    assert not stage_exists(engine, first.storage_ref)


@pytest.mark.anyio
async def test_delete_keeps_committed_file_and_discards_open_bytes(engine: Engine) -> None:
    s = await engine.create_session(ALICE, "test", NS, "kept", 4)
    await engine.write_range(s.id, ALICE, 0, 4, body(b"kept"))
    await engine.commit(s.id, ALICE)
    await engine.delete_session(s.id, ALICE)
    assert await read(engine, "kept") == b"kept"
    with pytest.raises(SessionGone):
        await engine.get_session(s.id)
    o = await engine.create_session(ALICE, "test", NS, "open", 4)
    await engine.write_range(o.id, ALICE, 0, 2, body(b"op"))
    await engine.delete_session(o.id, ALICE)
    assert not stage_exists(engine, o.storage_ref)
    assert await engine.storage.stat(NS, "open") is None


# -- compose --------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_compose_publishes_parts_without_copying(engine: Engine) -> None:
    datas = [os.urandom(n) for n in (10_000, 0, 3)]
    parts = []
    for i, d in enumerate(datas):
        p = await engine.create_session(ALICE, "test", NS, f"part{i}", len(d))
        if d:
            await engine.write_range(p.id, ALICE, 0, len(d), body(d))
        parts.append(p)
    assert isinstance(engine.storage, LocalStore)
    inode = os.stat(engine.storage.staging / parts[0].storage_ref).st_ino
    ids = [parts[0].id, parts[1].id, parts[2].id, parts[0].id]
    info = await engine.compose(ALICE, ids, NS, "whole")
    whole = datas[0] + datas[2] + datas[0]
    assert info.size == len(whole)
    assert await read(engine, "whole") == whole
    assert inode in {os.stat(p).st_ino for p in engine.storage.composites.glob("*/*")}
    for p in parts:
        got = await engine.get_session(p.id)
        assert got.state is SessionState.COMMITTED
        assert not stage_exists(engine, p.storage_ref)
    assert (await engine.compose(ALICE, ids, NS, "whole")).size == len(whole)  # retry after a lost response
    with pytest.raises(SessionConflict):
        await engine.compose(ALICE, ids, NS, "elsewhere")
    assert [(o.key, o.size) for o in await engine.walk(NS, "")] == [("whole", len(whole))]


@pytest.mark.anyio
async def test_compose_refuses_incomplete_or_foreign_parts_and_consumes_nothing(engine: Engine) -> None:
    done = await engine.create_session(ALICE, "test", NS, "a", 2)
    await engine.write_range(done.id, ALICE, 0, 2, body(b"ab"))
    partial = await engine.create_session(ALICE, "test", NS, "b", 4)
    await engine.write_range(partial.id, ALICE, 0, 2, body(b"cd"))
    with pytest.raises(SessionIncomplete):
        await engine.compose(ALICE, [done.id, partial.id], NS, "whole")
    with pytest.raises(PermissionDenied):
        await engine.compose(BOB, [done.id], NS, "whole")
    await engine.put_object(NS, "folder/x", body(b"x"))
    with pytest.raises(PathConflict):
        await engine.compose(ALICE, [done.id, done.id], NS, "folder")
    assert await engine.storage.stat(NS, "whole") is None
    for s in (done, partial):
        got = await engine.get_session(s.id)
        assert got.state is SessionState.OPEN and not got.composed_into
        assert stage_exists(engine, s.storage_ref)
    await engine.write_range(partial.id, ALICE, 2, 4, body(b"ef"))
    await engine.compose(ALICE, [done.id, partial.id], NS, "whole")
    assert await read(engine, "whole") == b"abcdef"


@pytest.mark.anyio
@pytest.mark.parametrize("keep_partial", [True, False])
async def test_disconnect_keeps_the_prefix_only_when_asked(engine: Engine, keep_partial: bool) -> None:
    from chunkd.core.body import ClientGone

    s = await engine.create_session(ALICE, "test", NS, "f", 100)

    async def cut() -> Body:
        yield b"a" * 30
        raise ClientGone()

    with pytest.raises(ClientGone):
        await engine.write_range(s.id, ALICE, 0, 100, cut(), keep_partial=keep_partial)
    got = await engine.get_session(s.id)
    assert list(await engine.received(got)) == ([(0, 30)] if keep_partial else [])
    # either way the claim is gone: the rest (or everything) can be written at once
    assert (await engine.write_range(s.id, ALICE, 0, 100, body(b"a" * 100))).new_bytes == (70 if keep_partial else 100)


@pytest.mark.anyio
async def test_sweep_finishes_an_interrupted_commit_and_survives_a_failing_one(
        engines: Callable[..., Engine], clock: FakeClock) -> None:
    engine = await engines(session_ttl=60.0)  # type: ignore[misc]
    crashed = await engine.create_session(ALICE, "test", NS, "crashed", 3)
    await engine.write_range(crashed.id, ALICE, 0, 3, body(b"abc"))
    blocked = await engine.create_session(ALICE, "test", NS, "blocked", 3)
    await engine.write_range(blocked.id, ALICE, 0, 3, body(b"xyz"))
    idle = await engine.create_session(ALICE, "test", NS, "idle", 3)
    for s in (crashed, blocked):  # a process died right after marking these COMMITTING
        current = await engine.get_session(s.id)
        await engine.store.update(s.id, current.version, SessionChanges(state=SessionState.COMMITTING))
    await engine.put_object(NS, "blocked/child", body(b"!"))  # publishing "blocked" will fail
    clock.now += 61
    assert await engine.sweep() == 1  # only the idle open session lost bytes
    assert await read(engine, "crashed") == b"abc"
    assert (await engine.store.get(crashed.id)).state is SessionState.COMMITTED  # type: ignore[union-attr]
    assert (await engine.store.get(blocked.id)).state is SessionState.OPEN  # type: ignore[union-attr]
    assert (await engine.store.get(idle.id)).state is SessionState.EXPIRED  # type: ignore[union-attr]
    assert await engine.sweep() == 1  # the blocked session is an idle open session now
    assert not stage_exists(engine, blocked.storage_ref)


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_two_processes_commit_at_once(engines: Callable[..., Engine], backend: str) -> None:
    one, two = await engines(), await engines()  # type: ignore[misc]
    data = os.urandom(50_000)
    s = await one.create_session(ALICE, "test", NS, "racy", len(data))
    await two.write_range(s.id, ALICE, 0, len(data), body(data, 8192))
    results: list[SessionState] = []

    async def commit(engine: Engine) -> None:
        results.append((await engine.commit(s.id, ALICE)).state)

    async with anyio.create_task_group() as tg:
        for engine in (one, two, one, two):
            tg.start_soon(commit, engine)
    assert results == [SessionState.COMMITTED] * 4
    assert await read(two, "racy") == data
    assert [(o.key, o.size) for o in await one.walk(NS, "")] == [("racy", len(data))]


@pytest.mark.anyio
@pytest.mark.parametrize("other_records", [True, False])
async def test_waiting_for_another_writer(engine: Engine, other_records: bool) -> None:
    from chunkd.core.errors import RangeBusy

    s = await engine.create_session(ALICE, "test", NS, "f", 200)
    # another request holds [0, 100) and is still writing it
    claimed = (await engine.store.claim(WriteIntent(s.id, "other", 0, 100), engine.clock(), 30.0)).claim
    assert claimed is not None and claimed.to_write == [(0, 100)]
    outcome: list[object] = []

    async def mine() -> None:
        try:
            outcome.append(await engine.write_range(s.id, ALICE, 0, 200, body(b"m" * 200)))
        except RangeBusy as exc:
            outcome.append(exc)

    with anyio.fail_after(10):  # far less than busy_wait (30 s): the outcome is noticed at once
        async with anyio.create_task_group() as tg:
            tg.start_soon(mine)
            await anyio.sleep(0.3)
            assert outcome == []  # still waiting for the other request
            if other_records:
                await engine.store.record(s.id, "other", [Piece(s.storage_ref, 0, 100)], engine.clock(),
                                          engine.clock() + 60)
            else:
                await engine.store.release(s.id, "other")
    # The waiting writer holds its own part while it waits (before reading its body) and re-claims: when
    # the other records, it writes the rest; when the other gives up, it takes that range over itself.
    result = outcome[0]
    assert not isinstance(result, RangeBusy) and result.session.received == 200  # type: ignore[attr-defined]
    assert result.new_bytes == (100 if other_records else 200)  # type: ignore[attr-defined]
