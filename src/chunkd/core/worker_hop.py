"""The per-chunk worker-thread hop, with less machinery than ``anyio.to_thread.run_sync``.

A small chunk crosses to a worker thread once (claim, flush, record: :mod:`chunkd.core.small_writes`).
anyio's hop takes a capacity-limiter token, a cancel scope and its own worker queue on top of the thread
handover itself: 73-93 µs of CPU for a no-op under uvloop here, against 63-75 µs for this one over
``loop.run_in_executor`` (medians of three runs of ``bench/chunk_parts.py hop``; bench/README.md, "fourth
round"), at several hundred chunks per second.

Semantics kept from anyio's default (``abandon_on_cancel=False``): a cancelled caller still waits for the
thread to finish before the cancellation goes on, so nothing the thread does (a claim, a record) outlives
the request that started it unobserved. The pool is bounded like anyio's default limiter (40 threads) and
created on first use, in the process that uses it (``--workers`` processes start their own).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import anyio

__all__ = ["MAX_THREADS", "run_in_worker"]

T = TypeVar("T")
MAX_THREADS = 40

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="chunkd-write")
    return _pool


async def run_in_worker(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread; its result, or what it raised. Needs an asyncio event loop (the
    server's, uvloop included). On cancellation, waits for ``fn`` to return, then re-raises."""
    fut = asyncio.get_running_loop().run_in_executor(_executor(), fn, *args)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True):
            await asyncio.wait((fut,))
        raise
