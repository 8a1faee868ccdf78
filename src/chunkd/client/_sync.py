"""Runs upload flows over ``httpx.Client``; chunk flows run on a thread pool (``Parallel.limit`` threads)."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import httpx

from chunkd.client._errtext import transport_reason
from chunkd.client._flow import ChunkJob, Digest, Flow, Parallel, Sleep
from chunkd.client.errors import CannotConnect, ConnectionFailed

T = TypeVar("T")


def run_flow(flow: Flow[T], client: httpx.Client) -> T:
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
            outcome = _perform(step, client)
        except httpx.TransportError as exc:
            error = transport_failure(step, exc)


def transport_failure(step: object, exc: httpx.TransportError) -> ConnectionFailed:
    """The client's error for an httpx transport failure: :class:`CannotConnect` when no connection could be
    opened (nothing reached the server), else :class:`ConnectionFailed`."""
    reason = transport_reason(exc)
    kind = CannotConnect if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) else ConnectionFailed
    return kind(f"{_describe(step)}: {reason}", reason=reason)


def _describe(step: object) -> str:
    request = step.request if isinstance(step, Digest) else step
    if isinstance(request, httpx.Request):
        return f"{request.method} {request.url.copy_with(query=None)}"
    return repr(step)


def _perform(step: object, client: httpx.Client) -> Any:
    if isinstance(step, httpx.Request):
        return client.send(step)
    if isinstance(step, Sleep):
        time.sleep(step.seconds)
        return None
    if isinstance(step, Digest):
        response = client.send(step.request, stream=True)
        try:
            size = 0
            if 200 <= response.status_code < 300:
                for piece in response.iter_bytes():
                    step.hasher.update(piece)
                    size += len(piece)
            return response.status_code, size
        finally:
            response.close()
    if isinstance(step, Parallel):
        _run_parallel(step, client)
        return None
    raise TypeError(f"unknown flow step {step!r}")


def _run_parallel(par: Parallel, client: httpx.Client) -> None:
    active: dict[Future[None], ChunkJob] = {}
    with ThreadPoolExecutor(max_workers=par.limit, thread_name_prefix="chunkd-upload") as pool:
        try:
            while True:
                while len(active) < par.limit and (job := par.take()) is not None:
                    active[pool.submit(run_flow, job.flow, client)] = job
                if not active:
                    return
                done, _ = wait(active, return_when=FIRST_COMPLETED)
                for future in done:
                    par.finished(active.pop(future), future.exception())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
