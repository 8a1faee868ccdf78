"""What LocalStorage promises beyond the conformance suite: no copies, garbage collection, symlink defence."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from chunkd.core.errors import InvalidPath
from chunkd.storage import local
from chunkd.storage.local import LocalStorage
from tests.conformance.storage_suite import NS, read_all, staged


@pytest.mark.anyio
async def test_publish_and_composite_do_not_copy(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    ref = await staged(storage, b"x" * 100_000)
    inode = os.stat(storage.staging / ref).st_ino
    await storage.publish(ref, NS, "plain", 100_000)
    assert os.stat(storage.objects / NS / "plain").st_ino == inode
    refs = [await staged(storage, bytes([i]) * 5000) for i in range(3)]
    inodes = {os.stat(storage.staging / r).st_ino for r in refs}
    await storage.publish_composite([(r, 5000) for r in refs], NS, "comp")
    part_inodes = {os.stat(p).st_ino for p in storage.composites.glob("*/[0-9]*")}
    assert part_inodes == inodes
    assert os.path.islink(storage.objects / NS / "comp")


@pytest.mark.anyio
async def test_garbage_collection_of_replaced_composites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "ORPHAN_SCAN_INTERVAL", -1.0)  # no rate limit in this test
    storage = LocalStorage(tmp_path)
    refs = [(await staged(storage, b"ab"), 2), (await staged(storage, b"cd"), 2)]
    await storage.publish_composite(refs, NS, "k")
    await storage.publish_composite([(await staged(storage, b"1"), 1), (await staged(storage, b"2"), 1)], NS, "k")
    assert len(os.listdir(storage.trash)) == 1
    assert await storage.collect_garbage() == 0  # within the grace period readers may still need it
    monkeypatch.setattr(local, "TRASH_GRACE", -1.0)
    assert await storage.collect_garbage() == 1
    assert os.listdir(storage.trash) == []
    assert await read_all(storage, "k") == b"12"
    # an orphan: a composite whose link was lost (e.g. a crash, or a racing replacement)
    os.unlink(storage.objects / NS / "k")
    monkeypatch.setattr(local, "ORPHAN_AGE", -1.0)
    assert await storage.collect_garbage() == 1
    assert await storage.collect_garbage() == 1  # from the trash
    assert os.listdir(storage.composites) == [] and os.listdir(storage.trash) == []


@pytest.mark.anyio
async def test_user_content_is_never_a_manifest(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    text = b"chunkd-composite:abc:5"
    ref = await staged(storage, text)
    await storage.publish(ref, NS, "looks-like-a-link", len(text))
    assert await read_all(storage, "looks-like-a-link") == text


@pytest.mark.anyio
async def test_symlinked_folder_leaving_the_store_is_refused(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    (storage.objects / NS).mkdir(parents=True)
    os.symlink(outside, storage.objects / NS / "link")
    ref = await staged(storage, b"evil")
    with pytest.raises(InvalidPath):
        await storage.publish(ref, NS, "link/file", 4)
    assert list(outside.iterdir()) == []


@pytest.mark.anyio
async def test_crash_debris_is_collected(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    session_file = await staged(storage, b"keep me")
    lookalike = await staged(storage, b"a session whose id starts like debris", "copy-deleted-link")
    (storage.staging / ".copy-dead.part").write_bytes(b"x")
    (storage.staging / ".deleted-0123").mkdir()
    old = time.time() - local.ORPHAN_AGE - 10
    for name in (".copy-dead.part", ".deleted-0123", session_file, lookalike):
        os.utime(storage.staging / name, (old, old))
    assert await storage.collect_garbage() == 2
    assert sorted(os.listdir(storage.staging)) == sorted([session_file, lookalike])


@pytest.mark.anyio
async def test_background_writes_finish_before_close_and_report_errors(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path)
    ref = await storage.stage_create("bg")
    writer = await storage.stage_open(ref, 0)
    pieces = [bytes([i]) * (64 << 10) for i in range(2 * (local.FLUSH_AT >> 16))]  # exactly 2 x FLUSH_AT
    for p in pieces:
        await writer.write(p)
    await writer.close()  # the second MiB may still be in flight: close waits for it, it does not drop it
    assert (storage.staging / ref).read_bytes() == b"".join(pieces)

    def failing(fd: int, bufs: list[bytes], offset: int, writeback: bool = True) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local, "_pwrite_all", failing)
    writer = await storage.stage_open(ref, 0)
    for p in pieces[: local.FLUSH_AT >> 16]:
        await writer.write(p)  # handed to the background thread, fails there
    with pytest.raises(OSError, match="No space"):
        await writer.flush(True)  # the failed write is reported before anything is acknowledged
    await writer.close()
