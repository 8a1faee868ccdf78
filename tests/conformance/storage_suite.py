"""The ByteStore conformance suite: every implementation runs these tests unchanged.

To add an implementation, add a factory to ``IMPLEMENTATIONS``: it gets a fresh temporary directory and
returns a callable that opens *another handle* on the same backing store each time it is called (two
handles stand for two server processes; a store that lives in one process returns the same object).
What an implementation must guarantee (see :mod:`chunkd.core.bytestore`):

* **Pieces**: any number of writers, each with its own handle, may write pieces of one ref at disjoint
  offsets in any order; ``finish`` returns the piece ``[start, start + written)``; an empty piece is fine.
  ``discard`` is idempotent and removes everything staged under the ref.
* **assemble** publishes a list of pieces, in the given order (of one ref or several, in any order,
  repeated), as one object, atomically: a reader sees the old object or the new one, never a mix, even
  while the object is replaced over and over. It consumes nothing (the pieces stay until ``discard``),
  so running it twice is fine; it works for no pieces (an empty object), creates missing folders, and
  refuses (PathConflict) when a folder has the target's name or a file stands where a folder is needed.
  A piece that is not in the store raises PiecesMissing, and nothing is published.
* **Objects**: ``stat`` is None for folders and missing keys; ``read`` of any range; a read that started
  before the object was replaced or deleted still returns the old bytes; ``delete`` is False when nothing
  was there.
* **Folders** (capability): ``list_folder`` lists immediate children sorted by key; ``walk`` every object
  below a folder (or the object itself); ``delete_folder`` removes a whole folder.
* **ServerSideCopy** (capability): ``copy`` one object, replacing the target.
* **Containment**: namespaces and keys that would leave the store (``..``, absolute, NUL) are refused with
  InvalidPath before anything is touched.
* ``collect_garbage`` never removes live staging areas or objects, and removes the dead ones it is told of.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import pytest

from chunkd.core.bytestore import ByteStore, Folders, GarbageCollecting, ServerSideCopy, UsageReport
from chunkd.core.errors import InvalidPath, PathConflict, PiecesMissing
from chunkd.core.models import Piece
from chunkd.storage.local import LocalStore
from chunkd.storage.memory import MemoryStore

Factory = Callable[[], ByteStore]


def _memory(tmp: Path) -> Factory:
    store = MemoryStore()
    return lambda: store


def _azure(tmp: Path) -> Factory:
    """Azure Blob on the shared Azurite, one prefix per test. Segments of 128 KiB (blocks of 64 KiB) make
    the suite's larger objects span several staging blobs, so multi-run publishing is exercised too."""
    import secrets

    from chunkd.storage._azure_client import parse_target
    from chunkd.storage.azure import AzureStore
    from tests import azurite

    target = parse_target(azurite.storage_url("conformance", secrets.token_hex(6)), {"AZURE_STORAGE_KEY": azurite.KEY})

    def handle() -> AzureStore:
        store = AzureStore(target, segment_size=128 << 10, block_size=64 << 10, orphan_age=-1.0, scan_interval=0)
        azurite.opened.append(store)  # closed after the test, on its event loop (tests/conformance/conftest.py)
        return store

    return handle


def _s3(tmp: Path) -> Factory:
    """A fresh prefix of a bucket on a real moto server; every handle has its own clients. Leftovers count
    as old at once (what the suite does to the other stores' ORPHAN_AGE)."""
    from tests.conformance.s3moto import moto

    url = moto().url()
    pytest.importorskip("obstore")
    from chunkd.storage._s3_config import parse_url
    from chunkd.storage.s3 import S3Store

    return lambda: S3Store(parse_url(url), orphan_age=-1.0, scan_interval=0.0)


IMPLEMENTATIONS: dict[str, Callable[[Path], Factory]] = {
    "azure": _azure,
    "local": lambda tmp: lambda: LocalStore(tmp / "store"),
    "memory": _memory,
    "s3": _s3,
}

NS = "suite"


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def handles(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Opens handles on one fresh backing store of the implementation under test."""
    return IMPLEMENTATIONS[request.param](tmp_path)


@pytest.fixture
def storage(handles: Factory) -> ByteStore:
    return handles()


async def piece(storage: ByteStore, ref: str, start: int, data: bytes, step: int = 300) -> Piece:
    w = await storage.open_piece(ref, start, durable=True)
    for i in range(0, len(data), step):  # several small writes, as body pieces arrive
        await w.write(data[i:i + step])
    return await w.finish(True)


async def staged(storage: ByteStore, data: bytes, hint: str = "t") -> list[Piece]:
    ref = storage.new_ref(hint)
    return [await piece(storage, ref, 0, data, 65536)]


async def put(storage: ByteStore, key: str, data: bytes) -> None:
    await storage.assemble(await staged(storage, data), NS, key)


async def read_all(storage: ByteStore, key: str, start: int = 0, end: int = 1 << 40) -> bytes:
    return b"".join([chunk async for chunk in storage.read(NS, key, start, end)])


def folders(storage: ByteStore) -> Folders:
    if not isinstance(storage, Folders):
        pytest.skip(f"{storage.name} has no folders")
    return storage


# -- pieces ---------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_pieces_from_several_writers_assemble_in_order(handles: Factory) -> None:
    first = handles()
    ref = first.new_ref("sparse")
    chunks = [os.urandom(1000 + i) for i in range(16)]
    starts = [sum(len(c) for c in chunks[:i]) for i in range(len(chunks))]
    got: dict[int, Piece] = {}

    async def writer(handle: ByteStore, i: int) -> None:
        got[i] = await piece(handle, ref, starts[i], chunks[i])

    async with anyio.create_task_group() as tg:
        for i in reversed(range(len(chunks))):  # out of order, from two handles
            tg.start_soon(writer, handles() if i % 2 else first, i)
    for i, p in got.items():
        assert (p.ref, p.start, p.end) == (ref, starts[i], starts[i] + len(chunks[i]))
    ordered = [got[i] for i in range(len(chunks))]
    info = await handles().assemble(ordered, NS, "whole.bin")
    assert info.size == sum(len(c) for c in chunks)
    assert await read_all(handles(), "whole.bin") == b"".join(chunks)


@pytest.mark.anyio
async def test_empty_piece(storage: ByteStore) -> None:
    ref = storage.new_ref("empty")
    w = await storage.open_piece(ref, 7, durable=True)
    p = await w.finish(True)
    assert (p.start, p.end, p.size) == (7, 7, 0)


@pytest.mark.anyio
async def test_aborted_piece_is_not_needed(storage: ByteStore) -> None:
    ref = storage.new_ref("abort")
    kept = await piece(storage, ref, 0, b"keep")
    w = await storage.open_piece(ref, 4, durable=True)
    await w.write(b"dropped")
    await w.abort()
    await w.abort()  # idempotent
    await storage.assemble([kept], NS, "k")
    assert await read_all(storage, "k") == b"keep"


@pytest.mark.anyio
async def test_discard_is_idempotent_and_removes_the_pieces(storage: ByteStore) -> None:
    pieces = await staged(storage, b"x" * 10)
    await storage.discard(pieces[0].ref)
    await storage.discard(pieces[0].ref)
    with pytest.raises(PiecesMissing):
        await storage.assemble(pieces, NS, "gone")
    assert await storage.stat(NS, "gone") is None


# -- assemble -------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_assemble_reads_back_and_is_idempotent(handles: Factory) -> None:
    storage = handles()
    data = os.urandom(200_000)
    pieces = await staged(storage, data)
    info = await storage.assemble(pieces, NS, "dir/sub/file.bin")
    assert (info.namespace, info.key, info.size) == (NS, "dir/sub/file.bin", len(data))
    again = await handles().assemble(pieces, NS, "dir/sub/file.bin")  # a retry after a crash
    assert again.size == len(data)
    other = handles()
    assert await read_all(other, "dir/sub/file.bin") == data
    assert await read_all(other, "dir/sub/file.bin", 1000, 1010) == data[1000:1010]
    assert await read_all(other, "dir/sub/file.bin", len(data) - 5, len(data) + 100) == data[-5:]
    stat = await other.stat(NS, "dir/sub/file.bin")
    assert stat is not None and stat.size == len(data)
    await storage.discard(pieces[0].ref)  # the engine discards after recording the commit
    assert await read_all(other, "dir/sub/file.bin") == data


@pytest.mark.anyio
async def test_assemble_zero_pieces(storage: ByteStore) -> None:
    info = await storage.assemble([], NS, "empty.txt")
    assert info.size == 0
    assert await read_all(storage, "empty.txt") == b""
    if isinstance(storage, Folders):
        listing = await storage.list_folder(NS, "")
        assert [(f.key, f.size) for f in listing.files] == [("empty.txt", 0)]


@pytest.mark.anyio
async def test_assemble_any_order_several_refs_repeats(handles: Factory) -> None:
    storage = handles()
    ref = storage.new_ref("blocks")
    blocks = [os.urandom(n) for n in (70_000, 1, 33_333)]
    placed: list[Piece] = []
    at = 0
    for b in blocks:  # one ref, pieces at their own offsets (staged blocks)
        placed.append(await piece(storage, ref, at, b))
        at += len(b) + 5  # gaps between pieces are never read
    other = await staged(storage, b"other session", "part2")
    order: Sequence[Piece] = [placed[2], other[0], placed[0], placed[1], placed[2]]
    whole = blocks[2] + b"other session" + blocks[0] + blocks[1] + blocks[2]
    info = await storage.assemble(order, NS, "comp/whole.bin")
    assert info.size == len(whole)
    reader = handles()
    assert await read_all(reader, "comp/whole.bin") == whole
    for start, end in [(0, 1), (33_332, 33_340), (33_333, 33_346), (33_346, 103_346), (len(whole) - 2, len(whole) + 9),
                       (5, 5)]:
        assert await read_all(reader, "comp/whole.bin", start, end) == whole[start:end]
    for p in (placed[0], other[0]):
        await storage.discard(p.ref)
    assert await read_all(reader, "comp/whole.bin") == whole  # the object keeps its bytes
    stat = await reader.stat(NS, "comp/whole.bin")
    assert stat is not None and stat.size == len(whole)
    if isinstance(reader, Folders):
        assert [(f.key, f.size) for f in (await reader.list_folder(NS, "comp")).files] == [
            ("comp/whole.bin", len(whole))]
        assert [(o.key, o.size) for o in await reader.walk(NS, "")] == [("comp/whole.bin", len(whole))]
    if isinstance(reader, ServerSideCopy):
        await reader.copy(NS, "comp/whole.bin", "copy/whole.bin")
        assert await read_all(reader, "copy/whole.bin") == whole
    assert await reader.delete(NS, "comp/whole.bin")
    assert await reader.stat(NS, "comp/whole.bin") is None
    assert not await reader.delete(NS, "comp/whole.bin")


@pytest.mark.anyio
async def test_assemble_replaces_atomically_under_concurrent_reads(handles: Factory) -> None:
    writer, reader = handles(), handles()
    size = 256 * 1024
    versions = [bytes([65 + i]) * size for i in range(4)]
    await put(writer, "hot", versions[0])
    done = False

    async def read_loop() -> None:
        while not done:
            got = await read_all(reader, "hot")
            assert got in versions, "a reader saw a mix of two versions"
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
            if i % 2:  # alternate one-piece and several-piece objects: a reader must cope with either kind
                await put(writer, "hot", data)
            else:
                ref = writer.new_ref("halves")
                back = await piece(writer, ref, 1000, data[1000:], 65536)
                front = await piece(writer, ref, 0, data[:1000])
                await writer.assemble([front, back], NS, "hot")
            await anyio.sleep(0)
        done = True
    assert await read_all(reader, "hot") == versions[24 % 4]


@pytest.mark.anyio
async def test_reader_of_replaced_object_finishes_with_old_bytes(handles: Factory) -> None:
    writer, reader = handles(), handles()
    ref = writer.new_ref("r")
    parts = [bytes([48 + i]) * 300_000 for i in range(5)]
    pieces = [await piece(writer, ref, i * 300_000, p, 65536) for i, p in enumerate(parts)]
    await writer.assemble(list(reversed(pieces)), NS, "r")
    stream = reader.read(NS, "r", 0, 5 * 300_000)
    first = await stream.__anext__()
    await put(writer, "r", b"replacement")
    await writer.delete(NS, "r")
    await writer.discard(ref)
    if isinstance(writer, GarbageCollecting):
        await writer.collect_garbage(_nothing_live)
    rest = b"".join([chunk async for chunk in stream])
    assert first + rest == b"".join(reversed(parts))


@pytest.mark.anyio
async def test_assemble_onto_folder_or_below_file_conflicts_and_keeps_pieces(storage: ByteStore) -> None:
    await put(storage, "folder/inner", b"1")
    await put(storage, "plain", b"2")
    for key in ("folder", "plain/below"):
        for pieces in (await staged(storage, b"new"), [*await staged(storage, b"a"), *await staged(storage, b"b")]):
            with pytest.raises(PathConflict):
                await storage.assemble(pieces, NS, key)
            await storage.assemble(pieces, NS, f"ok-{len(pieces)}")  # the pieces are still there
    assert await read_all(storage, "folder/inner") == b"1"
    assert await read_all(storage, "plain") == b"2"


@pytest.mark.anyio
async def test_missing_piece_publishes_nothing(storage: ByteStore) -> None:
    good = await staged(storage, b"good")
    lost = Piece(storage.new_ref("never-written"), 0, 10)
    with pytest.raises(PiecesMissing):
        await storage.assemble([*good, lost], NS, "whole")
    assert await storage.stat(NS, "whole") is None
    assert (await storage.assemble(good, NS, "whole")).size == 4


# -- folders, delete, copy ------------------------------------------------------------------------
async def tree(storage: ByteStore) -> None:
    for key, data in [("app/manifest.xml", b"m" * 10), ("app/code/a.dll", b"a" * 20), ("app/code/b.dll", b"b"),
                      ("app/code/deep/c.txt", b"cc"), ("top.txt", b"t" * 5)]:
        await put(storage, key, data)


@pytest.mark.anyio
async def test_folders_and_listings(storage: ByteStore) -> None:
    f = folders(storage)
    await tree(storage)
    assert await f.is_folder(NS, "app")
    assert await f.is_folder(NS, "app/code")
    assert not await f.is_folder(NS, "top.txt")
    assert not await f.is_folder(NS, "nope")
    assert await storage.stat(NS, "app") is None
    assert await storage.stat(NS, "nope") is None
    root = await f.list_folder(NS, "")
    assert [(i.key, i.size) for i in root.files] == [("top.txt", 5)]
    assert root.folders == ["app"]
    app = await f.list_folder(NS, "app")
    assert [(i.key, i.size) for i in app.files] == [("app/manifest.xml", 10)]
    assert app.folders == ["app/code"]
    code = await f.list_folder(NS, "app/code")
    assert [(i.key, i.size) for i in code.files] == [("app/code/a.dll", 20), ("app/code/b.dll", 1)]
    assert code.folders == ["app/code/deep"]
    assert await f.list_folder(NS, "missing") == type(root)([], [])
    walked = sorted((o.key, o.size) for o in await f.walk(NS, "app"))
    assert walked == [("app/code/a.dll", 20), ("app/code/b.dll", 1), ("app/code/deep/c.txt", 2),
                      ("app/manifest.xml", 10)]
    assert len(await f.walk(NS, "")) == 5
    await put(storage, "app-x", b"")
    keys = [o.key for o in await f.walk(NS, "")]
    assert keys == sorted(keys) and keys[:2] == ["app-x", "app/code/a.dll"]
    assert [(o.key, o.size) for o in await f.walk(NS, "top.txt")] == [("top.txt", 5)]
    assert await f.walk(NS, "missing") == []
    assert await f.walk("other", "") == []  # namespaces are separate


@pytest.mark.anyio
async def test_delete_file_and_folder(handles: Factory) -> None:
    storage = handles()
    f = folders(storage)
    await tree(storage)
    assert await storage.delete(NS, "top.txt")
    assert await storage.stat(NS, "top.txt") is None
    assert not await storage.delete(NS, "top.txt")
    with pytest.raises(FileNotFoundError):
        await read_all(storage, "top.txt")
    assert await folders(handles()).delete_folder(NS, "app/code")
    assert not await f.is_folder(NS, "app/code")
    assert [o.key for o in await f.walk(NS, "")] == ["app/manifest.xml"]
    assert not await f.delete_folder(NS, "app/code")
    # a deleted folder's name can become a file, and a file's name a folder
    await put(storage, "app/code", b"now a file")
    assert await read_all(storage, "app/code") == b"now a file"
    ref = storage.new_ref("d")
    await storage.assemble([await piece(storage, ref, 2, b"cd"), await piece(storage, ref, 0, b"ab")], NS, "d/c")
    await put(storage, "d/p", b"x")
    assert await f.delete_folder(NS, "d")
    assert [o.key for o in await f.walk(NS, "")] == ["app/code", "app/manifest.xml"]


@pytest.mark.anyio
async def test_server_side_copy(storage: ByteStore) -> None:
    if not isinstance(storage, ServerSideCopy):
        pytest.skip(f"{storage.name} has no server-side copy")
    await put(storage, "top.txt", b"t" * 5)
    await put(storage, "copies/top2.txt", b"old")
    info = await storage.copy(NS, "top.txt", "copies/top2.txt")
    assert info.size == 5
    assert await read_all(storage, "copies/top2.txt") == b"t" * 5
    assert await read_all(storage, "top.txt") == b"t" * 5  # the source is untouched
    with pytest.raises(FileNotFoundError):
        await storage.copy(NS, "missing", "x")


# -- containment ----------------------------------------------------------------------------------
BAD_KEYS = ["../escape", "a/../../escape", "/etc/passwd", "a/./b", "nul\0byte"]
BAD_NAMESPACES = ["..", "../x", "a/../b", "", "/abs"]


@pytest.mark.anyio
@pytest.mark.parametrize("key", BAD_KEYS)
async def test_escaping_keys_are_refused(storage: ByteStore, key: str, tmp_path: Path) -> None:
    pieces = await staged(storage, b"evil")
    with pytest.raises(InvalidPath):
        await storage.assemble(pieces, NS, key)
    with pytest.raises(InvalidPath):
        await storage.stat(NS, key)
    with pytest.raises(InvalidPath):
        await storage.delete(NS, key)
    with pytest.raises(InvalidPath):
        await read_all(storage, key)
    if isinstance(storage, Folders):
        with pytest.raises(InvalidPath):
            await storage.list_folder(NS, key)
    if isinstance(storage, ServerSideCopy):
        with pytest.raises((InvalidPath, FileNotFoundError)):
            await storage.copy(NS, "x", key)
    assert not (tmp_path / "escape").exists()
    assert (await storage.assemble(pieces, NS, "fine")).size == 4


@pytest.mark.anyio
@pytest.mark.parametrize("namespace", BAD_NAMESPACES)
async def test_escaping_namespaces_are_refused(storage: ByteStore, namespace: str) -> None:
    pieces = await staged(storage, b"evil")
    with pytest.raises(InvalidPath):
        await storage.assemble(pieces, namespace, "x")
    with pytest.raises(InvalidPath):
        await storage.stat(namespace, "x")


# -- capabilities ---------------------------------------------------------------------------------
async def _nothing_live(ref: str) -> bool:
    return False


@pytest.mark.anyio
async def test_collect_garbage_keeps_live_and_removes_dead(storage: ByteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    if not isinstance(storage, GarbageCollecting):
        pytest.skip(f"{storage.name} collects no garbage")
    live = await staged(storage, b"staged", "live")
    dead = await staged(storage, b"orphan", "dead")
    await put(storage, "obj", b"live")
    ref = storage.new_ref("comp")
    await storage.assemble([await piece(storage, ref, 1, b"b"), await piece(storage, ref, 0, b"a")], NS, "c")
    import chunkd.storage.local as local
    import chunkd.storage.memory as memory

    monkeypatch.setattr(local, "ORPHAN_AGE", -1.0)  # everything is old enough to be looked at
    monkeypatch.setattr(memory, "ORPHAN_AGE", -1.0)

    async def is_live(r: str) -> bool:
        return r in (live[0].ref, ref)

    await storage.collect_garbage(is_live)
    assert await read_all(storage, "obj") == b"live"
    assert await read_all(storage, "c") == b"ba"
    await storage.assemble(live, NS, "still-staged")
    assert await read_all(storage, "still-staged") == b"staged"
    with pytest.raises(PiecesMissing):
        await storage.assemble(dead, NS, "orphan")


@pytest.mark.anyio
async def test_usage_figures(storage: ByteStore) -> None:
    if not isinstance(storage, UsageReport):
        pytest.skip(f"{storage.name} reports no usage")
    await staged(storage, b"staged")
    usage = await storage.usage()
    assert usage.capacity >= usage.available >= 0
    assert usage.staged_files >= 1
