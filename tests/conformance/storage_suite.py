"""The ByteStorage conformance suite: every implementation runs these tests unchanged.

To add an implementation, add a factory to ``IMPLEMENTATIONS``: it gets a fresh temporary directory and
returns a callable that opens *another handle* on the same backing store each time it is called (two
handles stand for two server processes). What an implementation must guarantee:

* **Staged bytes** are sparse: any number of writers, each with its own handle and writer, may write
  disjoint ranges at any offsets in any order; bytes never written read as zeros; ``flush(True)`` makes
  written bytes durable. ``stage_discard`` is idempotent, and afterwards the ref is gone.
* **publish** makes staged ``[0, length)`` an object atomically (a reader sees the old object or the new
  one, never a mix, even while the object is replaced over and over), consumes the staged ref, works for 0
  bytes, creates missing folders, and refuses (PathConflict) when a folder has the target's name or a file
  stands where a folder is needed, without consuming anything. A missing ref raises FileNotFoundError.
* **publish_composite** does the same for the concatenation of several staged refs (a ref may repeat);
  the result is an ordinary object to ``stat``, ``read`` (any range), ``list_folder``, ``walk``,
  ``copy`` and ``delete``; on failure nothing is consumed; a read that started before the object was
  replaced still returns the old bytes.
* **Objects and folders**: ``stat`` is None for folders and missing keys; ``list_folder`` lists immediate
  children (files with sizes, sub-folder keys) sorted by key; ``walk`` lists every object below a folder
  (or the object itself); ``delete`` removes a file or a whole folder, False when nothing was there;
  ``copy`` copies a file or folder (replacing, skipping file names in ``skip``, never into itself).
* **Containment**: namespaces and keys that would leave the store (``..``, absolute, NUL) are refused with
  InvalidPath before anything is touched.
* ``collect_garbage`` never removes staged refs or live objects.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from chunkd.core.errors import InvalidPath, PathConflict
from chunkd.storage.base import ByteStorage
from chunkd.storage.local import LocalStorage

Factory = Callable[[], ByteStorage]

IMPLEMENTATIONS: dict[str, Callable[[Path], Factory]] = {
    "local": lambda tmp: lambda: LocalStorage(tmp / "store"),
}

NS = "suite"


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def handles(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Opens handles on one fresh backing store of the implementation under test."""
    return IMPLEMENTATIONS[request.param](tmp_path)


@pytest.fixture
def storage(handles: Factory) -> ByteStorage:
    return handles()


async def staged(storage: ByteStorage, data: bytes, hint: str = "t") -> str:
    ref = await storage.stage_create(hint)
    writer = await storage.stage_open(ref, 0)
    try:
        await writer.write(data)
        await writer.flush(True)
    finally:
        await writer.close()
    return ref


async def put(storage: ByteStorage, key: str, data: bytes) -> None:
    await storage.publish(await staged(storage, data), NS, key, len(data))


async def read_all(storage: ByteStorage, key: str, start: int = 0, end: int = 1 << 40) -> bytes:
    return b"".join([piece async for piece in storage.read(NS, key, start, end)])


async def stage_bytes(storage: ByteStorage, ref: str, length: int) -> bytes:
    return b"".join([piece async for piece in storage.stage_read(ref, 0, length)])


# -- staged bytes ---------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_sparse_writes_from_several_writers(handles: Factory) -> None:
    first = handles()
    ref = await first.stage_create("sparse")
    size = 3 * 65536 + 123
    expected = bytearray(size)
    pieces = [(i * 4096, os.urandom(1000 + i)) for i in range(0, 48, 3)]  # gaps between the pieces stay zero
    pieces.reverse()  # out of order

    async def writer(handle: ByteStorage, offset: int, data: bytes) -> None:
        w = await handle.stage_open(ref, offset)
        try:
            # several small writes, as body pieces arrive
            for i in range(0, len(data), 300):
                await w.write(data[i:i + 300])
            await w.flush(True)
        finally:
            await w.close()

    async with anyio.create_task_group() as tg:
        for n, (offset, data) in enumerate(pieces):
            expected[offset:offset + len(data)] = data
            tg.start_soon(writer, handles() if n % 2 else first, offset, data)
    tail = os.urandom(123)
    await writer(handles(), size - 123, tail)
    expected[size - 123:] = tail
    assert await stage_bytes(handles(), ref, size) == bytes(expected)
    assert b"".join([p async for p in first.stage_read(ref, 4096 + 10, 4096 * 4)]) == bytes(expected[4106:16384])


@pytest.mark.anyio
async def test_writer_seek_and_skip(storage: ByteStorage) -> None:
    ref = await storage.stage_create("seek")
    w = await storage.stage_open(ref, 10)
    await w.write(b"abc")
    await w.skip(2)
    await w.write(b"de")
    await w.seek(0)
    await w.write(b"XY")
    await w.flush(True)
    await w.close()
    assert await stage_bytes(storage, ref, 17) == b"XY" + bytes(8) + b"abc" + bytes(2) + b"de"


@pytest.mark.anyio
async def test_stage_discard_is_idempotent(storage: ByteStorage) -> None:
    ref = await staged(storage, b"x" * 10)
    assert await storage.stage_exists(ref)
    await storage.stage_discard(ref)
    assert not await storage.stage_exists(ref)
    await storage.stage_discard(ref)
    with pytest.raises(FileNotFoundError):
        await storage.stage_open(ref, 0)
    with pytest.raises(FileNotFoundError):
        await storage.publish(ref, NS, "gone", 10)
    assert await storage.stat(NS, "gone") is None


# -- publish --------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_publish_consumes_stage_and_reads_back(handles: Factory) -> None:
    storage = handles()
    data = os.urandom(200_000)
    ref = await staged(storage, data)
    info = await storage.publish(ref, NS, "dir/sub/file.bin", len(data))
    assert (info.namespace, info.key, info.size) == (NS, "dir/sub/file.bin", len(data))
    assert not await storage.stage_exists(ref)
    other = handles()
    assert await read_all(other, "dir/sub/file.bin") == data
    assert await read_all(other, "dir/sub/file.bin", 1000, 1010) == data[1000:1010]
    assert await read_all(other, "dir/sub/file.bin", len(data) - 5, len(data) + 100) == data[-5:]
    stat = await other.stat(NS, "dir/sub/file.bin")
    assert stat is not None and stat.size == len(data)


@pytest.mark.anyio
async def test_publish_zero_bytes(storage: ByteStorage) -> None:
    ref = await storage.stage_create("empty")
    info = await storage.publish(ref, NS, "empty.txt", 0)
    assert info.size == 0
    assert await read_all(storage, "empty.txt") == b""
    listing = await storage.list_folder(NS, "")
    assert [(f.key, f.size) for f in listing.files] == [("empty.txt", 0)]


@pytest.mark.anyio
async def test_publish_length_beyond_written_bytes_reads_zeros(storage: ByteStorage) -> None:
    ref = await staged(storage, b"abc")
    await storage.publish(ref, NS, "padded", 6)
    assert await read_all(storage, "padded") == b"abc\0\0\0"


@pytest.mark.anyio
async def test_publish_replaces_atomically_under_concurrent_reads(handles: Factory) -> None:
    writer, reader = handles(), handles()
    size = 256 * 1024
    versions = [bytes([65 + i]) * size for i in range(4)]
    await put(writer, "hot", versions[0])
    seen: set[bytes] = set()
    done = False

    async def read_loop() -> None:
        while not done:
            got = await read_all(reader, "hot")
            assert got in versions, "a reader saw a mix of two versions"
            seen.add(got[:1])
            await anyio.sleep(0)

    async def stat_loop() -> None:
        while not done:
            info = await reader.stat(NS, "hot")
            assert info is not None and info.size == size
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_loop)
        tg.start_soon(stat_loop)
        for i in range(1, 25):
            data = versions[i % 4]
            if i % 2:  # alternate plain and composite objects: a reader must cope with either kind
                await put(writer, "hot", data)
            else:
                halves = [(await staged(writer, data[:1000]), 1000), (await staged(writer, data[1000:]), size - 1000)]
                await writer.publish_composite(halves, NS, "hot")
            await anyio.sleep(0)
        done = True
    assert await read_all(reader, "hot") == versions[24 % 4]
    assert await writer.copy(NS, "hot", "cold", frozenset()) == 1
    assert await read_all(reader, "cold") == versions[24 % 4]


@pytest.mark.anyio
async def test_publish_onto_folder_or_below_file_conflicts_and_keeps_stage(storage: ByteStorage) -> None:
    await put(storage, "folder/inner", b"1")
    await put(storage, "plain", b"2")
    for key in ("folder", "plain/below"):
        ref = await staged(storage, b"new")
        with pytest.raises(PathConflict):
            await storage.publish(ref, NS, key, 3)
        assert await storage.stage_exists(ref)
        assert await stage_bytes(storage, ref, 3) == b"new"
    assert await read_all(storage, "folder/inner") == b"1"
    assert await read_all(storage, "plain") == b"2"


# -- folders, listing, delete, copy ---------------------------------------------------------------
async def tree(storage: ByteStorage) -> None:
    for key, data in [("app/manifest.xml", b"m" * 10), ("app/code/a.dll", b"a" * 20), ("app/code/b.dll", b"b"),
                      ("app/code/deep/c.txt", b"cc"), ("top.txt", b"t" * 5)]:
        await put(storage, key, data)


@pytest.mark.anyio
async def test_folders_and_listings(storage: ByteStorage) -> None:
    await tree(storage)
    assert await storage.is_folder(NS, "app")
    assert await storage.is_folder(NS, "app/code")
    assert not await storage.is_folder(NS, "top.txt")
    assert not await storage.is_folder(NS, "nope")
    assert await storage.stat(NS, "app") is None
    assert await storage.stat(NS, "nope") is None
    root = await storage.list_folder(NS, "")
    assert [(f.key, f.size) for f in root.files] == [("top.txt", 5)]
    assert root.folders == ["app"]
    app = await storage.list_folder(NS, "app")
    assert [(f.key, f.size) for f in app.files] == [("app/manifest.xml", 10)]
    assert app.folders == ["app/code"]
    code = await storage.list_folder(NS, "app/code")
    assert [(f.key, f.size) for f in code.files] == [("app/code/a.dll", 20), ("app/code/b.dll", 1)]
    assert code.folders == ["app/code/deep"]
    assert await storage.list_folder(NS, "missing") == type(root)([], [])
    walked = sorted((o.key, o.size) for o in await storage.walk(NS, "app"))
    assert walked == [("app/code/a.dll", 20), ("app/code/b.dll", 1), ("app/code/deep/c.txt", 2),
                      ("app/manifest.xml", 10)]
    assert len(await storage.walk(NS, "")) == 5
    await put(storage, "app-x", b"")
    keys = [o.key for o in await storage.walk(NS, "")]
    assert keys == sorted(keys) and keys[:2] == ["app-x", "app/code/a.dll"]
    assert [(o.key, o.size) for o in await storage.walk(NS, "top.txt")] == [("top.txt", 5)]
    assert await storage.walk(NS, "missing") == []
    # namespaces are separate
    assert await storage.walk("other", "") == []


@pytest.mark.anyio
async def test_delete_file_and_folder(handles: Factory) -> None:
    storage = handles()
    await tree(storage)
    assert await storage.delete(NS, "top.txt")
    assert await storage.stat(NS, "top.txt") is None
    assert not await storage.delete(NS, "top.txt")
    with pytest.raises(FileNotFoundError):
        await read_all(storage, "top.txt")
    assert await handles().delete(NS, "app/code")
    assert not await storage.is_folder(NS, "app/code")
    assert [o.key for o in await storage.walk(NS, "")] == ["app/manifest.xml"]
    assert not await storage.delete(NS, "app/code")
    # a deleted folder's name can become a file, and a file's name a folder
    await put(storage, "app/code", b"now a file")
    assert await read_all(storage, "app/code") == b"now a file"


@pytest.mark.anyio
async def test_copy_file_and_folder_with_skip(storage: ByteStorage) -> None:
    await tree(storage)
    assert await storage.copy(NS, "top.txt", "copies/top2.txt", frozenset()) == 1
    assert await read_all(storage, "copies/top2.txt") == b"t" * 5
    await put(storage, "dst/app/code/a.dll", b"old")
    assert await storage.copy(NS, "app", "dst/app", frozenset({"b.dll"})) == 3
    assert sorted((o.key, o.size) for o in await storage.walk(NS, "dst")) == [
        ("dst/app/code/a.dll", 20), ("dst/app/code/deep/c.txt", 2), ("dst/app/manifest.xml", 10)]
    assert await read_all(storage, "app/code/a.dll") == b"a" * 20  # the source is untouched
    with pytest.raises(FileNotFoundError):
        await storage.copy(NS, "missing", "x", frozenset())
    with pytest.raises(InvalidPath):
        await storage.copy(NS, "app", "app/inner", frozenset())
    assert not await storage.is_folder(NS, "app/inner")


# -- containment ----------------------------------------------------------------------------------
BAD_KEYS = ["../escape", "a/../../escape", "/etc/passwd", "a/./b", "nul\0byte"]
BAD_NAMESPACES = ["..", "../x", "a/../b", "", "/abs"]


@pytest.mark.anyio
@pytest.mark.parametrize("key", BAD_KEYS)
async def test_escaping_keys_are_refused(storage: ByteStorage, key: str, tmp_path: Path) -> None:
    ref = await staged(storage, b"evil")
    with pytest.raises(InvalidPath):
        await storage.publish(ref, NS, key, 4)
    assert await storage.stage_exists(ref)
    with pytest.raises(InvalidPath):
        await storage.stat(NS, key)
    with pytest.raises(InvalidPath):
        await storage.delete(NS, key)
    with pytest.raises(InvalidPath):
        await storage.list_folder(NS, key)
    with pytest.raises(InvalidPath):
        await storage.copy(NS, "x", key, frozenset())
    with pytest.raises(InvalidPath):
        await read_all(storage, key)
    assert not (tmp_path / "escape").exists()


@pytest.mark.anyio
@pytest.mark.parametrize("namespace", BAD_NAMESPACES)
async def test_escaping_namespaces_are_refused(storage: ByteStorage, namespace: str) -> None:
    ref = await staged(storage, b"evil")
    with pytest.raises(InvalidPath):
        await storage.publish(ref, namespace, "x", 4)
    with pytest.raises(InvalidPath):
        await storage.walk(namespace, "")
    assert await storage.stage_exists(ref)


@pytest.mark.anyio
@pytest.mark.parametrize("ref", ["../x", "a/b", "", ".hidden"])
async def test_bad_staging_refs_are_refused(storage: ByteStorage, ref: str) -> None:
    with pytest.raises((InvalidPath, FileNotFoundError)):
        await storage.stage_open(ref, 0)
    with pytest.raises((InvalidPath, FileNotFoundError)):
        await storage.publish(ref, NS, "k", 0)


# -- composite objects ----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_composite_is_an_ordinary_object(handles: Factory) -> None:
    storage = handles()
    parts = [os.urandom(n) for n in (70_000, 1, 0, 33_333)]
    refs = [(await staged(storage, p, f"part{i}"), len(p)) for i, p in enumerate(parts)]
    order = [refs[0], refs[1], refs[2], refs[3], refs[1]]  # a part may repeat
    whole = parts[0] + parts[1] + parts[3] + parts[1]
    info = await storage.publish_composite(order, NS, "comp/whole.bin")
    assert info.size == len(whole)
    for ref, _ in refs:
        assert not await storage.stage_exists(ref)
    other = handles()
    assert await read_all(other, "comp/whole.bin") == whole
    for start, end in [(0, 1), (69_999, 70_002), (70_000, 70_001), (70_001, 80_000), (len(whole) - 2, len(whole) + 9),
                       (5, 5)]:
        assert await read_all(other, "comp/whole.bin", start, end) == whole[start:end]
    stat = await other.stat(NS, "comp/whole.bin")
    assert stat is not None and stat.size == len(whole)
    assert [(f.key, f.size) for f in (await other.list_folder(NS, "comp")).files] == [("comp/whole.bin", len(whole))]
    assert [(o.key, o.size) for o in await other.walk(NS, "")] == [("comp/whole.bin", len(whole))]
    assert not await other.is_folder(NS, "comp/whole.bin")
    assert await other.copy(NS, "comp", "copy", frozenset()) == 1
    assert await read_all(other, "copy/whole.bin") == whole
    assert await other.delete(NS, "comp/whole.bin")
    assert await other.stat(NS, "comp/whole.bin") is None
    assert not await other.delete(NS, "comp/whole.bin")
    assert await read_all(other, "copy/whole.bin") == whole
    await other.collect_garbage()
    assert await read_all(other, "copy/whole.bin") == whole


@pytest.mark.anyio
async def test_composite_of_one_or_no_parts(storage: ByteStorage) -> None:
    ref = await staged(storage, b"single")
    assert (await storage.publish_composite([(ref, 6)], NS, "one")).size == 6
    assert await read_all(storage, "one") == b"single"
    assert (await storage.publish_composite([], NS, "none")).size == 0
    assert await read_all(storage, "none") == b""


@pytest.mark.anyio
async def test_composite_replacement_both_ways(storage: ByteStorage) -> None:
    await put(storage, "k", b"plain")
    refs = [(await staged(storage, b"ab"), 2), (await staged(storage, b"cd"), 2)]
    await storage.publish_composite(refs, NS, "k")
    assert await read_all(storage, "k") == b"abcd"
    refs = [(await staged(storage, b"12"), 2), (await staged(storage, b"345"), 3)]
    await storage.publish_composite(refs, NS, "k")
    assert await read_all(storage, "k") == b"12345"
    await put(storage, "k", b"plain again")
    assert await read_all(storage, "k") == b"plain again"
    await storage.collect_garbage()
    assert [(o.key, o.size) for o in await storage.walk(NS, "")] == [("k", 11)]


@pytest.mark.anyio
async def test_composite_failure_consumes_nothing(storage: ByteStorage) -> None:
    await put(storage, "folder/x", b"1")
    refs = [(await staged(storage, b"ab"), 2), (await staged(storage, b"cd"), 2)]
    with pytest.raises(PathConflict):
        await storage.publish_composite(refs, NS, "folder")
    for (ref, _), data in zip(refs, (b"ab", b"cd"), strict=True):
        assert await storage.stage_exists(ref)
        assert await stage_bytes(storage, ref, 2) == data
    with pytest.raises(FileNotFoundError):
        await storage.publish_composite([*refs, ("missing-0.part", 3)], NS, "whole")
    assert await storage.stat(NS, "whole") is None
    for ref, _ in refs:
        assert await storage.stage_exists(ref)
    assert (await storage.publish_composite(refs, NS, "whole")).size == 4


@pytest.mark.anyio
async def test_reader_of_replaced_composite_finishes_with_old_bytes(handles: Factory) -> None:
    writer, reader = handles(), handles()
    parts = [bytes([48 + i]) * 4096 for i in range(5)]
    await writer.publish_composite([(await staged(writer, p), len(p)) for p in parts], NS, "r")
    stream = reader.read(NS, "r", 0, 5 * 4096)
    first = await stream.__anext__()
    await put(writer, "r", b"replacement")
    await writer.delete(NS, "r")
    await writer.collect_garbage()
    rest = b"".join([piece async for piece in stream])
    assert first + rest == b"".join(parts)


@pytest.mark.anyio
async def test_folder_delete_removes_composites_inside(storage: ByteStorage) -> None:
    refs = [(await staged(storage, b"ab"), 2), (await staged(storage, b"cd"), 2)]
    await storage.publish_composite(refs, NS, "d/c")
    await put(storage, "d/p", b"x")
    assert await storage.delete(NS, "d")
    assert await storage.walk(NS, "") == []
    await put(storage, "d/c", b"new")
    assert await read_all(storage, "d/c") == b"new"


@pytest.mark.anyio
async def test_collect_garbage_keeps_staged_and_live(storage: ByteStorage) -> None:
    ref = await staged(storage, b"staged")
    await put(storage, "live", b"live")
    await storage.publish_composite([(await staged(storage, b"a"), 1), (await staged(storage, b"b"), 1)], NS, "c")
    await storage.collect_garbage()
    assert await stage_bytes(storage, ref, 6) == b"staged"
    assert await read_all(storage, "live") == b"live"
    assert await read_all(storage, "c") == b"ab"
    usage = await storage.usage()
    assert {"capacity", "available", "staged_bytes", "staged_files"} <= set(usage)
    assert usage["staged_files"] >= 1
