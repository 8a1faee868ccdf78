"""Runs upload flows over ``httpx.AsyncClient``; chunk flows run as concurrent asyncio tasks."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import httpx

from chunkd.client._flow import ChunkJob, Digest, Flow, Parallel, Sleep
from chunkd.client._sync import transport_failure

T = TypeVar("T")


async def arun_flow(flow: Flow[T], client: httpx.AsyncClient) -> T:
    """Perform each step the flow yields until it returns."""
    outcome: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(outcome)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        outcome, error = None, None
        try:
            outcome = await _perform(step, client)
        except httpx.TransportError as exc:
            error = transport_failure(step, exc)


async def _perform(step: object, client: httpx.AsyncClient) -> Any:
    if isinstance(step, httpx.Request):
        return await client.send(step)
    if isinstance(step, Sleep):
        await asyncio.sleep(step.seconds)
        return None
    if isinstance(step, Digest):
        response = await client.send(step.request, stream=True)
        try:
            size = 0
            if 200 <= response.status_code < 300:
                async for piece in response.aiter_bytes():
                    step.hasher.update(piece)
                    size += len(piece)
            return response.status_code, size
        finally:
            await response.aclose()
    if isinstance(step, Parallel):
        await _run_parallel(step, client)
        return None
    raise TypeError(f"unknown flow step {step!r}")


async def _run_parallel(par: Parallel, client: httpx.AsyncClient) -> None:
    active: dict[asyncio.Task[None], ChunkJob] = {}
    try:
        while True:
            while len(active) < par.limit and (job := par.take()) is not None:
                active[asyncio.ensure_future(arun_flow(job.flow, client))] = job
            if not active:
                return
            done, _ = await asyncio.wait(active, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                par.finished(active.pop(task), task.exception())
    finally:
        for task in active:
            task.cancel()
        if active:
            await asyncio.gather(*active, return_exceptions=True)
