"""The per-chunk worker hop: results, errors, and a cancelled caller that waits for its thread."""

from __future__ import annotations

import threading

import anyio
import pytest

from chunkd.core.worker_hop import run_in_worker

pytestmark = pytest.mark.anyio


async def test_result_and_error_come_back() -> None:
    assert await run_in_worker(lambda a, b: a + b, 2, 3) == 5
    ran_in = await run_in_worker(threading.get_ident)
    assert ran_in != threading.get_ident()

    def fails() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        await run_in_worker(fails)


async def test_a_cancelled_caller_waits_for_the_thread_to_finish() -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def work() -> str:
        started.set()
        release.wait(10)
        finished.append("work")
        return "done"

    async def caller(scope: anyio.CancelScope) -> None:
        with scope:
            await run_in_worker(work)
            finished.append("returned")  # never: the scope was cancelled
        finished.append("cancelled")

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(caller, scope)
        await anyio.to_thread.run_sync(started.wait, 10)
        scope.cancel()
        for _ in range(20):  # the caller is cancelled but must stay inside the hop while the thread runs
            await anyio.sleep(0.005)
        assert finished == []
        release.set()
    assert finished == ["work", "cancelled"]
