"""The server's sweep loop on a full disk: the refusal is a one-line warning per sweep, not a traceback, and
the loop keeps running (the next sweep after space is freed does the work)."""

from __future__ import annotations

import logging

import anyio
import pytest

from chunkd.core.errors import StorageFull
from chunkd.server import app


class FullThenFreed:
    def __init__(self) -> None:
        self.calls = 0

    async def sweep(self) -> int:
        self.calls += 1
        if self.calls == 1:
            raise StorageFull("the metadata store's disk is full")
        return 3


@pytest.mark.anyio
async def test_a_sweep_on_a_full_disk_warns_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    engine = FullThenFreed()
    caplog.set_level(logging.INFO, logger=app.log.name)
    with anyio.move_on_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(app._sweeper, engine, 0.01)
            while engine.calls < 2:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warned] == [
        "expiry sweep stopped: the metadata store's disk is full; it runs again in 0.01 s"]
    assert all(r.exc_info is None for r in caplog.records)
    assert any("expired 3 idle sessions" in r.getMessage() for r in caplog.records)
