"""What LocalStore promises beyond the conformance suite: no copies, crash-safe publishing, garbage
collection, symlink defence, background writes, recognising another data directory's pieces."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from chunkd.core.errors import InvalidPath, PiecesMissing, StorageFull
from chunkd.storage import _local_io, local
from chunkd.storage.local import LocalStore
from tests.conformance.storage_suite import NS, piece, read_all, staged


async def _live(ref: str) -> bool:
    return True


@pytest.mark.anyio
async def test_assemble_does_not_copy(tmp_path: Path) -> None:
    storage = LocalStore(tmp_path)
    pieces = await staged(storage, b"x" * 100_000)
    inode = os.stat(storage.staging / pieces[0].ref).st_ino
    await storage.assemble(pieces, NS, "plain")
    assert os.stat(storage.objects / NS / "plain").st_ino == inode  # a link, not a copy
    refs = [await staged(storage, bytes([i]) * 5000) for i in range(3)]
    inodes = {os.stat(storage.staging / r[0].ref).st_ino for r in refs}
    await storage.assemble([r[0] for r in refs], NS, "comp")
    part_inodes = {os.stat(p).st_ino for p in storage.composites.glob("*/[0-9]*")}
    assert part_inodes == inodes
    assert os.path.islink(storage.objects / NS / "comp")


@pytest.mark.anyio
async def test_a_retried_assembly_after_a_crash_is_recognised(tmp_path: Path) -> None:
    storage = LocalStore(tmp_path)
    pieces = await staged(storage, b"v1")
    await storage.assemble(pieces, NS, "k")
    inode = os.stat(storage.objects / NS / "k").st_ino
    await storage.assemble(pieces, NS, "k")  # the engine runs it again when the commit was not recorded
    assert os.stat(storage.objects / NS / "k").st_ino == inode
    assert [p.name for p in storage.staging.iterdir() if p.name.startswith(".")] == []  # no stray links


@pytest.mark.anyio
async def test_pieces_of_another_data_directory_are_missing_here(tmp_path: Path) -> None:
    mine, theirs = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    assert mine.store_id != theirs.store_id
    assert LocalStore(tmp_path / "a").store_id == mine.store_id  # kept across restarts
    pieces = await staged(theirs, b"remote bytes")
    with pytest.raises(PiecesMissing, match="another data directory"):
        await mine.assemble(pieces, NS, "k")
    assert await mine.stat(NS, "k") is None


@pytest.mark.anyio
async def test_garbage_collection_of_replaced_composites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "ORPHAN_SCAN_INTERVAL", -1.0)  # no rate limit in this test
    storage = LocalStore(tmp_path)

    async def two(a: bytes, b: bytes) -> None:
        ref = storage.new_ref("c")
        await storage.assemble([await piece(storage, ref, len(a), b), await piece(storage, ref, 0, a)], NS, "k")

    await two(b"ab", b"cd")
    await two(b"1", b"2")
    assert len(os.listdir(storage.trash)) == 1
    assert await storage.collect_garbage(_live) == 0  # within the grace period readers may still need it
    monkeypatch.setattr(local, "TRASH_GRACE", -1.0)
    assert await storage.collect_garbage(_live) == 1
    assert os.listdir(storage.trash) == []
    assert await read_all(storage, "k") == b"21"
    # an orphan: a composite whose link was lost (e.g. a crash, or a racing replacement)
    os.unlink(storage.objects / NS / "k")
    monkeypatch.setattr(local, "ORPHAN_AGE", -1.0)
    assert await storage.collect_garbage(_live) == 1
    assert await storage.collect_garbage(_live) == 1  # from the trash
    assert os.listdir(storage.composites) == [] and os.listdir(storage.trash) == []


@pytest.mark.anyio
async def test_user_content_is_never_a_manifest(tmp_path: Path) -> None:
    storage = LocalStore(tmp_path)
    text = b"chunkd-composite:abc:5"
    await storage.assemble(await staged(storage, text), NS, "looks-like-a-link")
    assert await read_all(storage, "looks-like-a-link") == text


@pytest.mark.anyio
async def test_symlinked_folder_leaving_the_store_is_refused(tmp_path: Path) -> None:
    storage = LocalStore(tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    (storage.objects / NS).mkdir(parents=True)
    os.symlink(outside, storage.objects / NS / "link")
    pieces = await staged(storage, b"evil")
    with pytest.raises(InvalidPath):
        await storage.assemble(pieces, NS, "link/file")
    assert list(outside.iterdir()) == []


@pytest.mark.anyio
async def test_crash_debris_and_orphans_are_collected(tmp_path: Path) -> None:
    storage = LocalStore(tmp_path)
    session_file = (await staged(storage, b"keep me", "live"))[0].ref
    orphan = (await staged(storage, b"nobody's", "dead"))[0].ref
    lookalike = (await staged(storage, b"a session whose id starts like debris", "copy-deleted-link"))[0].ref
    (storage.staging / ".copy-dead.part").write_bytes(b"x")
    (storage.staging / ".deleted-0123").mkdir()
    old = time.time() - local.ORPHAN_AGE - 10
    for name in (".copy-dead.part", ".deleted-0123", session_file, lookalike, orphan):
        os.utime(storage.staging / name, (old, old))

    async def is_live(ref: str) -> bool:
        return ref != orphan

    assert await storage.collect_garbage(is_live) == 3
    assert sorted(os.listdir(storage.staging)) == sorted([session_file, lookalike])


@pytest.mark.anyio
async def test_background_writes_finish_before_close_and_report_errors(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStore(tmp_path)
    ref = storage.new_ref("bg")
    writer = await storage.open_piece(ref, 0, durable=True)
    chunks = [bytes([i]) * (64 << 10) for i in range(2 * (_local_io.FLUSH_AT >> 16))]  # exactly 2 x FLUSH_AT
    for c in chunks:
        await writer.write(c)
    await writer.abort()  # the second half may still be in flight: closing waits for it, it does not drop it
    assert (storage.staging / ref).read_bytes() == b"".join(chunks)

    def failing(fd: int, bufs: list[bytes], offset: int, writeback: bool = True) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_local_io, "_pwrite_all", failing)
    writer = await storage.open_piece(ref, 0, durable=True)
    for c in chunks[: _local_io.FLUSH_AT >> 16]:
        await writer.write(c)  # handed to the background thread, fails there
    with pytest.raises(StorageFull):
        await writer.finish(True)  # the failed write is reported before anything is acknowledged




@pytest.mark.anyio
async def test_a_copy_onto_a_full_disk_is_storage_full_and_leaves_nothing(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy writes every byte again: ENOSPC there is StorageFull (it was a bare OSError, a 500), and
    neither the target nor the temporary file it was written into stays behind."""
    storage = LocalStore(tmp_path)
    await storage.assemble(await staged(storage, b"data" * 1000), NS, "src.bin")

    def full(src: object, dst: object, length: int = 0) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("shutil.copyfileobj", full)
    with pytest.raises(StorageFull):
        await storage.copy(NS, "src.bin", "dst.bin")
    assert await storage.stat(NS, "dst.bin") is None
    assert [n for n in os.listdir(storage.staging) if n.startswith(".copy-")] == []
