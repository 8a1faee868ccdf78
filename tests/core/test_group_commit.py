"""Group commit of durable acknowledgements (``chunkd.metadata._group_commit``), through the engine on a
real SQL store: records of concurrent chunks share one transaction and one commit; a failed commit fails
every member and records none of them; a member's own error fails only that member.

Members are lined up deterministically with the batcher's ``gate`` hook (the leader waits for it before
taking the queue), so nothing here depends on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from chunkd.core.engine import Engine
from chunkd.core.errors import WriteInterrupted
from chunkd.core.models import Piece
from tests.core import test_engine as base
from tests.core.test_engine import ALICE, NS, body

clock, engines, engine, pg_database = base.clock, base.engines, base.engine, base.pg_database  # their fixtures

N = 5


def _grouped_body(backend: str, data: bytes) -> Any:
    """A body whose record takes the group commit: on PostgreSQL a small chunk that arrived whole is
    claimed, written and recorded in one transaction of its own (``metadata/_pg_held.py``), so there the
    chunk arrives in parts and is streamed; on SQLite the one-hop path's record is group-committed too."""
    return body(data, 4 if backend == "postgresql" else 4096)


async def _lined_up(group: Any, n: int) -> None:
    """Wait until ``n`` members are queued behind the gated leader (the gate hook, no timing)."""
    with anyio.fail_after(30):  # a hang guard, not a speed assertion
        while group.queued() < n:
            await anyio.sleep(0.005)


async def _concurrently(group: Any, calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` at once behind a closed gate, open it when all are queued; their results or errors."""
    gate = threading.Event()
    group.gate = gate
    out: list[Any] = [None] * len(calls)

    async def one(i: int) -> None:
        try:
            out[i] = await calls[i]()
        except Exception as exc:
            out[i] = exc

    try:
        async with anyio.create_task_group() as tg:
            for i in range(len(calls)):
                tg.start_soon(one, i)
            await _lined_up(group, len(calls))
            gate.set()
    finally:
        group.gate = None
    return out


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_concurrent_chunks_share_one_commit(engines: Callable[..., Engine], backend: str) -> None:
    engine = await engines()  # type: ignore[misc]
    group = engine.store._group  # type: ignore[attr-defined]
    sessions = [await engine.create_session(ALICE, "tus", NS, f"g{i}", 20) for i in range(N)]
    batches, tx = group.batches, engine.store.transactions  # type: ignore[attr-defined]
    got = await _concurrently(group, [
        (lambda s=s: engine.append_at(s.id, ALICE, 0, _grouped_body(backend, b"a" * 10), 10)) for s in sessions])
    assert [g.received for g in got] == [10] * N
    assert group.batches - batches == 1  # one commit acknowledged all of them
    # the claims (N soft transactions) + one record transaction, where one per chunk would be 2 N
    assert engine.store.transactions - tx == N + 1  # type: ignore[attr-defined]
    for s in sessions:
        again = await engine.get_session(s.id)
        assert again.received == 10 and (await engine.store.ranges(s.id)).contains(0, 10)
        assert (await engine.append_at(s.id, ALICE, 10, body(b"b" * 10), 10)).complete


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_failed_commit_fails_every_member_and_records_nothing(engines: Callable[..., Engine],
                                                                      backend: str) -> None:
    engine = await engines()  # type: ignore[misc]
    group = engine.store._group  # type: ignore[attr-defined]
    sessions = [await engine.create_session(ALICE, "tus", NS, f"f{i}", 20) for i in range(N)]
    fired = []

    def fail() -> None:
        fired.append(1)
        raise OSError("the metadata disk went away")

    group.before_commit = fail
    try:
        got = await _concurrently(group, [
            (lambda s=s: engine.append_at(s.id, ALICE, 0, _grouped_body(backend, b"a" * 10), 10)) for s in sessions])
    finally:
        group.before_commit = None
    assert len(fired) == 1  # one batch
    assert all(isinstance(g, OSError) and "went away" in str(g) for g in got), got
    for s in sessions:  # nothing half-recorded; the claims were released, so the chunk can be resent
        assert (await engine.get_session(s.id)).received == 0
        assert not (await engine.store.ranges(s.id)).contains(0, 1)
        assert (await engine.append_at(s.id, ALICE, 0, body(b"a" * 10), 10)).received == 10


@pytest.mark.anyio
async def test_a_members_own_error_fails_only_that_member(engine: Engine) -> None:
    group = engine.store._group  # type: ignore[attr-defined]
    good = [await engine.create_session(ALICE, "tus", NS, f"o{i}", 20) for i in range(2)]
    bad = await engine.create_session(ALICE, "tus", NS, "bad", 20)
    stale = Piece(bad.storage_ref, 0, 10, "h")  # a token that holds no claim: another request took over
    calls: list[Callable[[], Any]] = [(lambda s=s: engine.append_at(s.id, ALICE, 0, body(b"a" * 10), 10))
                                      for s in good]
    calls.append(lambda: engine.store.record(bad.id, "no-such-token", [stale], 1.0, 2.0))
    got = await _concurrently(group, calls)
    assert [g.received for g in got[:2]] == [10, 10]
    assert isinstance(got[2], WriteInterrupted)
    assert (await engine.get_session(bad.id)).received == 0
    assert not (await engine.store.ranges(bad.id)).contains(0, 1)
