"""The upload algorithm, written once, as sans-I/O generators (the style of httpx's auth flows).

A *flow* is a generator that yields steps and receives their outcome:

* ``httpx.Request`` -> the ``httpx.Response`` (or :class:`ConnectionFailed` thrown in);
* :class:`Sleep` -> ``None`` after the delay;
* :class:`Digest` -> ``(status, bytes)`` after streaming a 2xx response body into its hasher;
* :class:`Parallel` -> ``None`` once the scheduler has nothing left to run; the driver runs up to
  ``limit`` chunk flows at once, asking :meth:`Parallel.take` for the next one whenever a slot is free.

The drivers (``_sync.py`` over ``httpx.Client`` with threads, ``_async.py`` over ``httpx.AsyncClient``)
only perform these steps; every decision lives here and in the protocol adapters.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from chunkd.client._retry import (
    Flow,
    Retrier,
    RetryCallback,
    RetryNotice,
    RetryPolicy,
    Sleep,
    Step,
    error_for,
    expect,
    parse_retry_after,
    retrying,
    send,
)
from chunkd.client._source import FileSource
from chunkd.client._state import StateStore
from chunkd.client.errors import (
    CannotConnect,
    RetriesExhausted,
    ServerError,
    SessionLost,
    TransferError,
    VerificationError,
)

if TYPE_CHECKING:
    from chunkd.client.adapters.base import Adapter

__all__ = [  # the retry pieces the adapters and tests import from here
    "Flow", "RetryCallback", "RetryNotice", "RetryPolicy", "Sleep", "Step", "error_for", "expect",
    "parse_retry_after", "retrying", "send",
]

Range = tuple[int, int]  # half-open [start, end)


@dataclass(frozen=True)
class Digest:
    """Stream ``request``'s response body into ``hasher`` (2xx only) without buffering it."""

    request: httpx.Request
    hasher: Any


# -- progress -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """Reported after every state change of one file's upload.

    ``done`` = bytes the server holds (as far as the client knows), ``sent`` = bytes sent by this run,
    ``phase`` one of ``open``, ``upload``, ``commit``, ``verify``, ``done``.
    """

    name: str
    done: int
    total: int
    sent: int
    phase: str


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class UploadResult:
    path: Path
    name: str
    protocol: str
    location: str  # where the file now lives (file URL, upload URL, blob URL...)
    size: int
    sha256: str
    sent: int  # bytes this run sent and the server accepted
    resumed_from: int  # bytes the server already had when this run started
    verified: bool | None  # True: read back and compared; None: not asked for
    seconds: float


@dataclass
class UploadOptions:
    """How to upload. ``chunk_size`` None = the protocol's default."""

    parallel: int = 4
    chunk_size: int | None = None
    resume: bool = True
    verify: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    state_dir: Path | None = None


# -- the chunk scheduler --------------------------------------------------------------------------
@dataclass
class ChunkJob:
    start: int
    end: int
    lane: object
    flow: Flow[None]


class Parallel:
    """Hands out chunk flows in offset order, at most one per lane at a time (tus parts are sequential),
    and stops handing out new ones after the first failure (the flow then re-asks the server).

    Reading happens in :meth:`take`, in offset order, so the whole-file digest follows the reads and no
    more than ``limit`` chunks are ever in memory.
    """

    def __init__(self, chunks: list[tuple[int, int, object]], limit: int, adapter: Adapter, source: FileSource,
                 on_done: Callable[[int, int], None]) -> None:
        self.limit = max(1, limit)
        self._queues: dict[object, deque[tuple[int, int]]] = {}  # lane -> its chunks in offset order
        for start, end, lane in chunks:
            self._queues.setdefault(lane, deque()).append((start, end))
        self._busy: set[object] = set()
        self._active = 0
        self._adapter = adapter
        self._source = source
        self._on_done = on_done
        self.failures: list[BaseException] = []

    def take(self) -> ChunkJob | None:
        """The next chunk to send, or None (nothing left, every lane busy, or a failure occurred). O(lanes)."""
        if self.failures:
            return None
        for lane, queue in self._queues.items():
            if not queue or (lane is not None and lane in self._busy):
                continue
            start, end = queue.popleft()
            if lane is not None:
                self._busy.add(lane)
            self._source.wait_backlog(self._active)  # the digest may hold only chunks still in flight
            self._active += 1
            data = self._source.read(start, end)
            return ChunkJob(start, end, lane, self._adapter.send_chunk(start, end, data))
        return None

    def finished(self, job: ChunkJob, error: BaseException | None) -> None:
        self._active -= 1
        self._busy.discard(job.lane)
        if error is None:
            self._on_done(job.start, job.end)
        else:
            self.failures.append(error)

    @property
    def fatal(self) -> BaseException | None:
        for exc in self.failures:
            if not (isinstance(exc, TransferError) and exc.retryable):
                return exc
        return None


def covered(ranges: list[Range]) -> int:
    return sum(e - s for s, e in ranges)


def plan(missing: list[Range], chunk_size: int, adapter: Adapter) -> list[tuple[int, int, object]]:
    """Cut missing ranges at multiples of ``chunk_size`` (a stable grid: blob block ids depend on it)."""
    out: list[tuple[int, int, object]] = []
    for start, end in sorted(missing):
        pos = start
        while pos < end:
            stop = min(end, (pos // chunk_size + 1) * chunk_size)
            out.append((pos, stop, adapter.lane(pos)))
            pos = stop
    return out


# -- the upload -----------------------------------------------------------------------------------
class _Tracker:
    def __init__(self, name: str, total: int, report: ProgressCallback | None) -> None:
        self.name, self.total, self.report = name, total, report
        self.done = self.sent = 0

    def emit(self, phase: str) -> None:
        if self.report is not None:
            self.report(Progress(self.name, self.done, self.total, self.sent, phase))

    def chunk_done(self, start: int, end: int) -> None:
        self.done = min(self.total, self.done + end - start)
        self.sent += end - start
        self.emit("upload")


def upload_flow(adapter: Adapter, source: FileSource, options: UploadOptions, store: StateStore | None,
                report: ProgressCallback | None = None,
                on_retry: RetryCallback | None = None) -> Flow[UploadResult]:
    """Create or resume, send missing chunks in parallel, re-ask after failures, commit, verify.
    ``on_retry`` hears of every wait before a retry."""
    began = time.monotonic()
    policy = options.retry
    retries = Retrier(policy, adapter.name, on_retry)
    key = StateStore.key(source.path.resolve(), source.size, source.mtime_ns, source.identity,
                         adapter.protocol, adapter.identity())
    saved = store.load(key) if (store is not None and options.resume) else None
    adapter.chunk_size = adapter.clamp_chunk_size(
        int(saved["chunk_size"]) if saved and saved.get("chunk_size") else options.chunk_size)
    adapter.parallel = max(1, options.parallel)
    track = _Tracker(adapter.name, source.size, report)
    track.emit("open")
    saved_adapter = saved.get("adapter") if saved else None
    missing = yield from retries.run(
        lambda: adapter.open(saved_adapter if isinstance(saved_adapter, dict) else None))

    def remember() -> None:
        if store is not None:
            store.save(key, {"version": 1, "path": str(source.path.resolve()), "protocol": adapter.protocol,
                             "target": adapter.identity(), "chunk_size": adapter.chunk_size,
                             "adapter": adapter.state})

    remember()
    track.done = resumed_from = source.size - covered(missing)
    track.emit("upload")
    limit = max(1, min(options.parallel, adapter.max_parallel))
    stalls = restarts = 0
    while missing:
        round_start, sent_before = track.done, track.sent
        scheduler = Parallel(plan(missing, adapter.chunk_size, adapter), limit, adapter, source, track.chunk_done)
        yield scheduler
        if scheduler.fatal is not None:
            raise scheduler.fatal
        if not scheduler.failures:
            break
        last = scheduler.failures[-1]
        if track.sent > sent_before or not all(isinstance(f, CannotConnect) for f in scheduler.failures):
            retries.answered = True  # a chunk got through, or the server answered with an error
        yield retries.unreachable(last) or retries.wait(stalls, policy.max_retries, last)
        try:
            missing = yield from retries.run(adapter.status)
        except SessionLost:
            restarts += 1
            if restarts > 2:
                raise
            missing = yield from retries.run(lambda: adapter.open(None))
            remember()
        track.done = source.size - covered(missing)
        stalls = 0 if track.done > round_start else stalls + 1  # progress anywhere in the round counts
        if stalls > policy.max_retries:
            raise RetriesExhausted(f"no progress after {policy.max_retries} retries: {last}", last)
        track.emit("upload")
    track.done = source.size
    track.emit("commit")
    location = yield from retries.run(adapter.finish)
    digest = source.sha256()
    verified: bool | None = None
    if options.verify:
        track.emit("verify")
        verified = yield from _verify(adapter, source.size, digest, retries)
    if store is not None:
        store.delete(key)
    track.emit("done")
    return UploadResult(source.path, adapter.name, adapter.protocol, location, source.size, digest, track.sent,
                        resumed_from, verified, time.monotonic() - began)


def _verify(adapter: Adapter, size: int, digest: str, retries: Retrier) -> Flow[bool]:
    """Read the stored file back in ``chunk_size`` windows (``Range`` requests, each retried on its own, so a
    flaky link cannot defeat a long read) and compare size and sha256. Bodies are streamed into the digest,
    never buffered; a server that ignores ``Range`` answers the first window with the whole file, which is
    just as good."""
    if adapter.download_request() is None:
        raise VerificationError(f"the {adapter.protocol} protocol offers no way to read {adapter.name} back")
    hasher = hashlib.sha256()
    pos = 0
    while True:
        end = min(size, pos + adapter.chunk_size)
        status, n, hasher = yield from retries.run(functools.partial(_window, adapter, pos, end, hasher))
        pos += n
        if status == 200 or pos >= size or n == 0:
            break
    if pos != size or hasher.hexdigest() != digest:
        raise VerificationError(f"{adapter.name}: the server has {pos}+ bytes with sha256 {hasher.hexdigest()}, "
                                f"the local file {size} bytes with sha256 {digest}")
    return True


def _window(adapter: Adapter, start: int, end: int, hasher: Any) -> Flow[tuple[int, int, Any]]:
    """Stream ``[start, end)`` into a copy of ``hasher``; (status, bytes read, the advanced copy)."""
    request = adapter.download_request()
    assert request is not None
    if end > start:
        request.headers["Range"] = f"bytes={start}-{end - 1}"
    copy = hasher.copy()
    status, n = yield Digest(request, copy)
    if status not in (200, 206) or (status == 200 and start > 0):
        raise ServerError(status, f"reading {adapter.name} back", retryable=status >= 500)
    return status, n, copy
