"""The local file being uploaded: positional reads plus a whole-file sha256 computed while reading.

The scheduler reads chunks in ascending offset order (per lane), so the digest can follow the reads; the
parts the server already has (resume) — or that another lane reads later (tus partial uploads) — are read
for the digest in bounded pieces when a later chunk or the end of the upload passes them; a chunk behind
the digest's position is simply not hashed again.

Hashing runs on a helper thread (hashlib releases the GIL), overlapping the send of the very chunk being
hashed; :meth:`FileSource.wait_backlog` lets the scheduler keep the number of chunk buffers alive at once
within its limit.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path

_CATCH_UP = 1 << 20


class FileSource:
    """One open file. ``read`` is positional (thread-safe); the digest must be fed in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        st = os.fstat(self._fd)
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self.identity = (st.st_dev, st.st_ino)
        self._hash = hashlib.sha256()
        self._hashed = 0  # bytes [0, _hashed) are in the digest or queued for it
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        self._thread = threading.Thread(target=self._hash_loop, name="chunkd-sha256", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._fd >= 0:
            self._queue.put(None)
            self._thread.join()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``; feeds the digest when they continue it."""
        self._catch_up(start)
        data = self.pread(start, end)
        if start == self._hashed:
            self._feed(data)
            self._hashed = end
        return data

    def pread(self, start: int, end: int) -> bytes:
        """Raw read that leaves the digest alone."""
        first = os.pread(self._fd, end - start, start)
        if len(first) == end - start:
            return first  # the usual case: one read, no copy
        out = bytearray(first)
        while start + len(out) < end:
            piece = os.pread(self._fd, end - start - len(out), start + len(out))
            if not piece:
                raise OSError(f"{self.path} shrank while it was being uploaded")
            out += piece
        return bytes(out)

    def wait_backlog(self, limit: int) -> None:
        """Block until at most ``limit`` buffers wait for the digest."""
        with self._done:
            while self._pending > limit:
                self._done.wait()

    def _feed(self, data: bytes) -> None:
        with self._done:
            self._pending += 1
        self._queue.put(data)

    def _hash_loop(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hash.update(data)
            with self._done:
                self._pending -= 1
                self._done.notify_all()

    def _catch_up(self, upto: int) -> None:
        while self._hashed < upto:
            n = min(_CATCH_UP, upto - self._hashed)
            self.wait_backlog(1)
            self._feed(self.pread(self._hashed, self._hashed + n))
            self._hashed += n

    def sha256(self) -> str:
        """Hex digest of the whole file (reads what was not read yet)."""
        self._catch_up(self.size)
        self.wait_backlog(0)
        return self._hash.hexdigest()
