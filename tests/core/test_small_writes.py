"""The one-hop path of small writes (core/small_writes.py): which bodies it takes, and that every body
it does not take reaches the streaming path unchanged; the SQLite write lock it runs under."""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chunkd.core.body import ClientGone
from chunkd.core.small_writes import prefetch
from chunkd.metadata._write_lock import WriteLock


async def pieces(*parts: bytes, error: Exception | None = None) -> AsyncIterator[bytes]:
    for p in parts:
        yield p
    if error is not None:
        raise error


async def drain(body: AsyncIterator[bytes]) -> tuple[list[bytes], Exception | None]:
    got: list[bytes] = []
    try:
        async for p in body:
            got.append(p)
    except Exception as exc:
        return got, exc
    return got, None


@pytest.mark.anyio
@pytest.mark.parametrize(("parts", "error", "exact"), [
    ((b"a" * 10,), None, True),  # arrived whole: one hop
    ((b"a" * 4, b"a" * 6), None, False),  # still arriving after its first piece: streamed under its claim
    ((b"a" * 10, b"b"), None, False),  # longer than declared: the streaming path refuses it
    ((b"a" * 8,), None, False),  # shorter
    ((b"a" * 10,), ClientGone(), False),  # cut off after its bytes
    ((b"a" * 3,), ValueError("checksum"), False),
])
async def test_prefetch_takes_only_whole_bodies_and_replays_the_rest(parts: tuple[bytes, ...],
                                                                    error: Exception | None, exact: bool) -> None:
    pre = await prefetch(pieces(*parts, error=error), 10)
    assert pre.exact is exact
    if not exact:  # the streaming path sees the same pieces and the same error, in order
        got, raised = await drain(pre.replay())
        assert got == list(parts) and raised is error


def test_write_lock_excludes_other_holders_and_is_reentrant(tmp_path: Path) -> None:
    path = tmp_path / "db-writer.lock"
    lock = WriteLock(path)
    other = os.open(path, os.O_RDWR)  # another process's open file: flock conflicts across open files
    try:
        with lock.held(), lock.held(), pytest.raises(BlockingIOError):  # re-entrant within its thread
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the outer block
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)
        lock.close()
