"""Engine.append_at and the tus service's set_length / concatenate, in-process over SQLite + local files.

Two Engine objects on one data directory stand for two server processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from chunkd.core.body import ClientGone
from chunkd.core.checksum import verified
from chunkd.core.engine import Engine
from chunkd.core.errors import ChecksumMismatch, LengthMismatch, OffsetMismatch, PermissionDenied, TooLarge
from chunkd.core.models import SessionState
from chunkd.services.tus_uploads import TusUploads
from tests.core import test_engine as base
from tests.core.test_engine import ALICE, BOB, NS, body, read, staged

clock, engines, engine, pg_database = base.clock, base.engines, base.engine, base.pg_database  # their fixtures


async def cut(data: bytes):  # type: ignore[no-untyped-def]
    yield data
    raise ClientGone()


@pytest.mark.anyio
async def test_append_is_sequential_and_reports_the_real_offset(engine: Engine) -> None:
    s = await engine.create_session(ALICE, "tus", NS, "a", 10)
    assert (await engine.append_at(s.id, ALICE, 0, body(b"01234"), 5)).received == 5
    with pytest.raises(OffsetMismatch) as info:
        await engine.append_at(s.id, ALICE, 3, body(b"34567"), 5)
    assert info.value.offset == 5
    with pytest.raises(TooLarge):
        await engine.append_at(s.id, ALICE, 5, body(b"567890"), 6)
    with pytest.raises(PermissionDenied):
        await engine.append_at(s.id, BOB, 5, body(b"56789"), 5)
    done = await engine.append_at(s.id, ALICE, 5, body(b"56789", 2), None)  # undeclared length: read to the end
    assert done.complete and done.received == 10


@pytest.mark.anyio
async def test_cut_body_keeps_what_arrived_unless_checksummed(engine: Engine) -> None:
    s = await engine.create_session(ALICE, "tus", NS, "b", 100)
    with pytest.raises(ClientGone):
        await engine.append_at(s.id, ALICE, 0, cut(b"x" * 40), 100)
    assert (await engine.get_session(s.id)).received == 40
    with pytest.raises(Exception, match="before the checksummed body"):
        await engine.append_at(s.id, ALICE, 40, verified(cut(b"y" * 30), "sha1", b"0" * 20), 60)
    assert (await engine.get_session(s.id)).received == 40
    with pytest.raises(ChecksumMismatch):
        await engine.append_at(s.id, ALICE, 40, verified(body(b"y" * 60), "md5", b"0" * 16), 60)
    assert (await engine.get_session(s.id)).received == 40


@pytest.mark.anyio
async def test_set_length_once(engine: Engine) -> None:
    s = await engine.create_session(ALICE, "tus", NS, "c", None)
    await engine.append_at(s.id, ALICE, 0, body(b"abc"), 3)
    uploads = TusUploads(engine)
    with pytest.raises(LengthMismatch):
        await uploads.set_length(s.id, ALICE, 2)
    assert (await uploads.set_length(s.id, ALICE, 5)).length == 5
    assert (await uploads.set_length(s.id, ALICE, 5)).length == 5
    with pytest.raises(LengthMismatch):
        await uploads.set_length(s.id, ALICE, 6)


@pytest.mark.anyio
async def test_concatenate_from_two_processes(engines: Callable[..., Engine]) -> None:
    one, two = await engines(), await engines()  # type: ignore[misc]
    data = [os.urandom(n) for n in (1000, 1, 5000)]
    parts = []
    for i, d in enumerate(data):
        p = await one.create_session(ALICE, "tus", NS, f"p{i}", len(d))
        await one.append_at(p.id, ALICE, 0, body(d), len(d))
        parts.append(p.id)
    final = await one.create_session(ALICE, "tus", NS, "final", sum(map(len, data)))
    first = await TusUploads(one).concatenate(final.id, ALICE, parts)
    again = await TusUploads(two).concatenate(final.id, ALICE, parts)  # a late second process: no-op
    assert first.state is again.state is SessionState.COMMITTED
    assert first.received == first.length == sum(map(len, data))
    assert await read(two, "final") == b"".join(data)


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_racing_appenders_in_two_processes_never_interleave(engines: Callable[..., Engine],
                                                                 backend: str) -> None:
    """Writers in two "processes" race to append the next chunk of one upload: each chunk position is
    taken by exactly one of them, the losers learn the real offset (or that a live writer is busy), and
    the stored bytes are exactly the winners' chunks in order."""
    import anyio

    from chunkd.core.errors import RangeBusy

    one, two = await engines(), await engines()
    size, chunks = 64, 16
    s = await one.create_session(ALICE, "tus", NS, "race", size * chunks)
    winners: dict[int, bytes] = {}
    refusals: list[type[Exception]] = []

    async def appender(engine: Engine, tag: int) -> None:
        offset = 0
        while offset < size * chunks:
            data = bytes([tag]) * size
            try:
                got = await engine.append_at(s.id, ALICE, offset, body(data), size)
                assert offset not in winners, f"offset {offset} was written twice"
                winners[offset] = data
                offset = got.received
            except OffsetMismatch as exc:
                refusals.append(OffsetMismatch)
                offset = exc.offset
            except RangeBusy:
                refusals.append(RangeBusy)
                await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        for i, engine in enumerate([one, two, one, two]):
            tg.start_soon(appender, engine, i + 1)
    assert sorted(winners) == [i * size for i in range(chunks)]
    assert refusals  # four writers, sixteen positions: they did collide
    assert await staged(one, s.id, size * chunks) == b"".join(winners[o] for o in sorted(winners))
