"""The image store service in-process over real SQLite and a real byte store: content listings page by
page, copies with CheckMarkFile/SkipFiles, usage figures by the byte store's capabilities, commit-target
checks and reserved folders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chunkd.core.body import Body
from chunkd.core.engine import Engine, EngineConfig
from chunkd.core.errors import InvalidPath, ObjectNotFound, SessionIncomplete
from chunkd.core.models import SessionState
from chunkd.metadata import open_store
from chunkd.services import image_store
from chunkd.services.image_store import CopyRequest, FaultCode, ImageStore, ImageStoreFault, StoreFolder
from chunkd.storage.local import LocalStore
from chunkd.storage.memory import MemoryStore
from tests.core.test_engine import ALICE, BOB, body

SID = "4a2340e8-d8d8-497c-95fe-cdaa1052f33b"


class FilesOnly:
    """A byte store with the required port only (no folders, no usage figures): a memory store seen
    through the narrow interface, as an object store without those capabilities would be."""

    name = "files-only"

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        if name in ("new_ref", "open_piece", "assemble", "discard", "stat", "read", "delete"):
            return getattr(self._inner, name)
        raise AttributeError(name)


async def _image_store(tmp_path: Path, kind: str) -> AsyncIterator[ImageStore]:
    metadata = open_store(f"sqlite:///{tmp_path / 'meta.db'}", str(tmp_path))
    await metadata.migrate()
    storage = LocalStore(tmp_path / "store") if kind == "local" else FilesOnly()
    yield ImageStore(Engine(metadata, storage, EngineConfig(durable=False)))  # type: ignore[arg-type]
    await metadata.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ImageStore]:
    """On local files, the default byte store: folders, usage figures."""
    async for made in _image_store(tmp_path, "local"):
        yield made


@pytest.fixture(params=["local", "files-only"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ImageStore]:
    async for made in _image_store(tmp_path, request.param):
        yield made


def data(text: str) -> Body:
    return body(text.encode())


async def put(store: ImageStore, *keys: str) -> None:
    for key in keys:
        await store.upload_file(key, data(key))


@pytest.mark.anyio
async def test_listing_pages_in_name_order(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_store, "PAGE_SIZE", 2)
    await put(store, "app/b.txt", "app/d/x", "app/d/y/z", "app/a.txt", "app/c/1")
    pages, marker = [], ""
    for _ in range(5):  # bounded: a marker that does not advance must fail, not hang
        page = await store.content("app", marker)
        pages.append(([f.key for f in page.files], list(page.folders)))
        if not (marker := page.continuation):
            break
    assert pages == [(["app/a.txt", "app/b.txt"], []),
                     ([], [StoreFolder("app/c", 1), StoreFolder("app/d", 2)])]
    assert [f.key for f in (await store.content("app/a.txt")).files] == ["app/a.txt"]
    with pytest.raises(ObjectNotFound):
        await store.content("app/none")


@pytest.mark.anyio
async def test_copy_marks_and_skips(store: ImageStore) -> None:
    await put(store, "src/a.txt", "src/b.txt")
    request = CopyRequest("src", "dst", frozenset({"b.txt"}), check_mark_file=True)
    assert await store.copy(request) == 0  # not marked complete: nothing copied
    assert await store.folder_size("") == len("src/a.txt") + len("src/b.txt")
    await put(store, "src/_.dir")
    assert await store.copy(request) == 2
    assert [f.key for f in await store.engine.walk(image_store.NAMESPACE, "dst")] == ["dst/_.dir", "dst/a.txt"]
    assert await store.folder_size("dst") == len("src/_.dir") + len("src/a.txt")
    with pytest.raises(InvalidPath):
        await store.copy(CopyRequest("src", "src/inner"))
    with pytest.raises(ImageStoreFault) as info:
        await store.copy(CopyRequest("src", "Store/x"))
    assert info.value.code is FaultCode.RESERVED_DIRECTORY


@pytest.mark.anyio
async def test_single_files_with_or_without_folders(any_store: ImageStore) -> None:
    await put(any_store, "one.txt")
    assert await any_store.copy(CopyRequest("one.txt", "two.txt")) == 1
    assert (await any_store.file("two.txt")).size == len("one.txt")
    await any_store.delete("two.txt")
    with pytest.raises(ObjectNotFound):
        await any_store.file("two.txt")


@pytest.mark.anyio
async def test_info_follows_the_byte_stores_capabilities(any_store: ImageStore) -> None:
    await put(any_store, "x/1.bin")
    await any_store.upload_chunk(ALICE, SID, "x/2.bin", 0, 2, 4, data("ab"))
    info = await any_store.info()
    if any_store.engine.capabilities.usage:
        assert (info.copied_bytes, info.copied_files) == (len("x/1.bin"), 1)
        assert info.capacity > 0 and info.available > 0 and info.staged_bytes >= 2 and info.staged_files == 1
    else:
        assert (info.copied_bytes, info.copied_files) == (0, 0)  # no folders: nothing to walk
        assert (info.capacity, info.available, info.staged_bytes, info.staged_files) == (0, 0, 0, 0)


@pytest.mark.anyio
async def test_reserved_roots_are_never_deleted(store: ImageStore) -> None:
    await put(store, "WindowsFabricStore/keep")
    for key in ("WindowsFabricStore", "windowsfabricstore/keep", "STORE"):
        with pytest.raises(ImageStoreFault) as info:
            await store.delete(key)
        assert info.value.code is FaultCode.RESERVED_DIRECTORY
    assert (await store.file("WindowsFabricStore/keep")).size == len("WindowsFabricStore/keep")


@pytest.mark.anyio
async def test_commit_checks_its_target_and_owner(store: ImageStore) -> None:
    await store.upload_chunk(ALICE, SID, "pkg", 0, 3, 6, data("abc"))
    with pytest.raises(SessionIncomplete):
        await store.commit(SID, ALICE)
    await put(store, "pkg/inner.txt")
    await store.upload_chunk(ALICE, SID, "pkg", 3, 6, 6, data("def"))
    assert [(u.session.id, u.missing) for u in await store.sessions_for("pkg")] == [(SID, ())]
    with pytest.raises(ImageStoreFault) as info:
        await store.commit(SID, ALICE)
    assert info.value.code is FaultCode.INVALID_DIRECTORY
    assert (await store.session(SID)).session.state is SessionState.OPEN  # still committable
    await store.delete("pkg")
    with pytest.raises(Exception, match="another principal"):
        await store.commit(SID, BOB)
    assert (await store.commit(SID, ALICE)).state is SessionState.COMMITTED
    with pytest.raises(ImageStoreFault) as info:
        await store.commit("9d1c7a52-6a0e-4b7b-8a57-0c2d3f4e5a6b", ALICE)
    assert info.value.code is FaultCode.INVALID_ARGUMENT
