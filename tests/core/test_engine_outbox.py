"""The engine writes lifecycle events to the store's outbox: the kinds webhooks select, with the state
changes that cause them, one ``completed`` / ``committed`` per session even when commits race."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from chunkd.core.engine import Engine
from chunkd.core.outbox import DURABLE_KINDS
from tests.conformance.metadata_suite import pg_database  # noqa: F401  (fixture)
from tests.core.test_engine import ALICE, NS, body, clock, engines  # noqa: F401  (fixtures)


async def outbox(engine: Engine) -> list[tuple[str, str, object]]:
    got = await engine.store.claim_events("test", engine.clock(), 60.0, 1000)
    return sorted((e.session.id, e.kind, e.detail.get("composed_into")) for e in got)


@pytest.mark.anyio
async def test_lifecycle_events_reach_the_outbox_once(engines: Callable[..., Engine]) -> None:  # noqa: F811
    engine: Engine = await engines(outbox_kinds=DURABLE_KINDS)  # type: ignore[misc]
    s = await engine.create_session(ALICE, "test", NS, "one", 4)
    await engine.write_range(s.id, ALICE, 0, 2, body(b"ab"))
    await engine.write_range(s.id, ALICE, 2, 4, body(b"cd"))
    await engine.write_range(s.id, ALICE, 2, 4, body(b"cd"))  # a retry adds no bytes and no event
    async with anyio.create_task_group() as tg:  # two commits racing
        for _ in range(2):
            tg.start_soon(engine.commit, s.id, ALICE)
    parts = []
    for i in range(2):
        p = await engine.create_session(ALICE, "test", NS, f"part{i}", 1)
        await engine.write_range(p.id, ALICE, 0, 1, body(b"x"))
        parts.append(p.id)
    await engine.compose(ALICE, parts, NS, "whole")
    gone = await engine.create_session(ALICE, "test", NS, "gone", 4)
    await engine.delete_session(gone.id, ALICE)
    target = f"{NS}/whole"
    assert await outbox(engine) == sorted([
        (s.id, "created", None), (s.id, "completed", None), (s.id, "committed", None),
        *[(p, kind, None) for p in parts for kind in ("created", "completed")],
        *[(p, "committed", target) for p in parts],
        (gone.id, "created", None), (gone.id, "deleted", None)])


@pytest.mark.anyio
async def test_no_outbox_writes_without_webhooks(engines: Callable[..., Engine]) -> None:  # noqa: F811
    engine: Engine = await engines()  # type: ignore[misc]
    s = await engine.create_session(ALICE, "test", NS, "one", 2)
    await engine.write_range(s.id, ALICE, 0, 2, body(b"ab"))
    await engine.commit(s.id, ALICE)
    assert await outbox(engine) == []
