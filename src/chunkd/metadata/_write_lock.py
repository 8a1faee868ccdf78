"""One SQLite writer at a time, handed over without polling.

SQLite lets one write transaction run at a time (``BEGIN IMMEDIATE``). A connection that finds the write
lock taken waits in SQLite's busy handler, which *sleeps* 1, 2, 5, 10, ... 100 ms between retries: with 8
connections sending 64 KiB chunks, the claim of one request and the record of another meet on every chunk,
and a server was seen sleeping ≈ 2.4 times per request, ≈ 4 ms each, while the lock was free again after
≈ 0.2 ms (strace of ``clock_nanosleep``, bench/README.md). So write transactions first take this lock:
threads of one process queue on a mutex, processes sharing the database (``--workers N``, several servers
on one data directory) on ``flock`` of a file next to it -- both wake the next writer the moment the holder
is done. SQLite's own locking stays underneath, unchanged: this only decides who asks first.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["WriteLock"]


class WriteLock:
    """Exclusive across the threads of this process (re-entrant) and across processes (``flock``)."""

    def __init__(self, path: Path) -> None:
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._mutex:
            self._depth += 1
            try:
                outer = self._depth == 1
                if outer:
                    fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    if outer:
                        fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                self._depth -= 1

    def close(self) -> None:
        with self._mutex:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
