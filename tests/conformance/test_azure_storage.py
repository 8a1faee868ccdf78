"""Azure Blob byte store: what the conformance suite cannot see -- how pieces live in the container, the
cost of a commit, racing commits to one blob name, crash-and-retry, garbage -- on a real Azurite."""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
from typing import Any

import azure.core.exceptions as sdk_errors
import pytest
from azure.storage.blob import ContainerClient, StorageErrorCode

from chunkd.core.errors import ChunkdError, Conflict, ObjectNotFound, PiecesMissing
from chunkd.core.models import Piece
from chunkd.storage import open_byte_store
from chunkd.storage._azure_client import parse_target
from chunkd.storage._azure_errors import AzureStoreError, from_sdk, from_status
from chunkd.storage.azure import AzureStore
from tests import azurite

pytestmark = pytest.mark.anyio
NS = "t"
KIB = 1024


def store(cls: type[AzureStore] = AzureStore, same_as: AzureStore | None = None, **options: Any) -> AzureStore:
    """A store on a fresh prefix of the test container, or on ``same_as``'s (another node)."""
    target = same_as.conn.target if same_as else parse_target(azurite.storage_url("azure-tests", secrets.token_hex(6)),
                                                              {"AZURE_STORAGE_KEY": azurite.KEY})
    made = cls(target, **options)
    azurite.opened.append(made)
    return made


def container() -> ContainerClient:
    """An independent view of the test container (the sync SDK)."""
    return ContainerClient(azurite.endpoint(), "azure-tests",
                           credential={"account_name": azurite.ACCOUNT, "account_key": azurite.KEY})


def committed_blocks(name: str) -> list[int]:
    with container() as c:
        committed, _ = c.get_blob_client(name).get_block_list("committed")
    return [b.size for b in committed]


async def write(s: AzureStore, ref: str, start: int, data: bytes) -> Piece:
    w = await s.open_piece(ref, start, durable=True)
    await w.write(data)
    return await w.finish(True)


async def pieces_of(s: AzureStore, data: bytes, size: int) -> list[Piece]:
    ref = s.new_ref("s")
    return [await write(s, ref, i, data[i:i + size]) for i in range(0, len(data), size)]


async def read(s: AzureStore, key: str) -> bytes:
    return b"".join([c async for c in s.read(NS, key, 0, 1 << 40)])


class Counting(AzureStore):
    """Counts the requests that carry bytes through this process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.puts = self.gets = 0
        put, get = self.conn.put_block, self.conn.get_range

        async def counted_put(*a: Any) -> None:
            self.puts += 1
            await put(*a)

        def counted_get(*a: Any) -> Any:
            self.gets += 1
            return get(*a)

        self.conn.put_block = counted_put  # type: ignore[method-assign]
        self.conn.get_range = counted_get  # type: ignore[method-assign]


async def test_64k_pieces_are_one_put_each_and_commit_moves_no_bytes() -> None:
    s = store(Counting)
    assert isinstance(s, Counting)
    data = os.urandom(40 * 64 * KIB)
    pieces = await pieces_of(s, data, 64 * KIB)
    assert s.puts == 40  # one Put Block per 64 KiB piece, no earlier byte sent again
    s.puts = 0
    await s.assemble(pieces, NS, "small.bin")
    assert (s.puts, s.gets) == (0, 0)  # sealed and copied inside Azure
    assert await read(s, "small.bin") == data
    staging = f"{s.prefix}staging/{pieces[0].ref}/00000000"
    assert committed_blocks(staging) == [64 * KIB] * 40  # the seal: one committed blob of all the pieces


async def test_many_small_pieces_coalesce_into_few_blocks_of_the_object() -> None:
    # 1 MiB in 4 KiB pieces = 256 pieces over 4 segments: the object gets a handful of blocks, not 256
    s = store(segment_size=256 * KIB, block_size=128 * KIB)
    data = os.urandom(1024 * KIB)
    pieces = await pieces_of(s, data, 4 * KIB)
    await s.assemble(pieces, NS, "coalesced.bin")
    assert await read(s, "coalesced.bin") == data
    blocks = committed_blocks(f"{s.prefix}objects/{NS}/coalesced.bin")
    assert sum(blocks) == len(data)
    assert len(blocks) <= 8  # 4 segments, each ≤ 2 blocks of 128 KiB (Azurite: copied through chunkd)
    for k in range(4):
        assert len(committed_blocks(f"{s.prefix}staging/{pieces[0].ref}/{k:08x}")) == 64


async def test_concurrent_commits_to_one_name_lose_no_acknowledged_bytes() -> None:
    """B publishes onto the name while A's blocks for it are staged: Azure drops A's uncommitted blocks;
    A publishes again from its sealed staging blobs and wins, and B's bytes are still intact too."""
    staged, go = asyncio.Event(), asyncio.Event()

    class Paused(AzureStore):
        async def _stage(self, name: str, bid: str, part: Any) -> None:
            await super()._stage(name, bid, part)
            if not staged.is_set():
                staged.set()
                await go.wait()

    a = store(Paused, segment_size=128 * KIB, block_size=64 * KIB)
    b = store(same_as=a, segment_size=128 * KIB)
    data_a, data_b = os.urandom(400 * KIB), os.urandom(300 * KIB)
    pieces_a, pieces_b = await pieces_of(a, data_a, 100 * KIB), await pieces_of(b, data_b, 100 * KIB)
    task = asyncio.create_task(a.assemble(pieces_a, NS, "same.bin"))
    await asyncio.wait_for(staged.wait(), 30)
    await b.assemble(pieces_b, NS, "same.bin")  # its Put Block List drops A's staged blocks on the name
    assert await read(b, "same.bin") == data_b
    go.set()
    await asyncio.wait_for(task, 60)
    assert await read(a, "same.bin") == data_a
    await b.assemble(pieces_b, NS, "same.bin")  # nothing B acknowledged was lost either
    assert await read(a, "same.bin") == data_b


async def test_two_sessions_racing_to_one_name_both_succeed() -> None:
    a = store(segment_size=128 * KIB, block_size=64 * KIB)
    b = store(same_as=a, segment_size=128 * KIB, block_size=64 * KIB)
    for round_ in range(3):
        data_a, data_b = os.urandom(300 * KIB + round_), os.urandom(260 * KIB + round_)
        pa, pb = await pieces_of(a, data_a, 64 * KIB), await pieces_of(b, data_b, 64 * KIB)
        await asyncio.gather(a.assemble(pa, NS, "race.bin"), b.assemble(pb, NS, "race.bin"))
        assert await read(a, "race.bin") in (data_a, data_b)
        for s, pieces, data in ((a, pa, data_a), (b, pb, data_b)):
            await s.assemble(pieces, NS, f"again-{round_}.bin")
            assert await read(s, f"again-{round_}.bin") == data


async def test_assemble_after_a_crash_mid_publish_is_idempotent() -> None:
    class Crashing(AzureStore):
        crash = True

        async def _publish(self, the_plan: Any, name: str) -> None:
            if self.crash:  # the seals are done, the object is not there yet
                self.crash = False
                raise ConnectionResetError("node died")
            await super()._publish(the_plan, name)

    for segment in (256 << 20, 64 * KIB):  # the Copy Blob path and the multi-run path
        s = store(Crashing, segment_size=segment, block_size=32 * KIB)
        data = os.urandom(200 * KIB)
        ref = s.new_ref("crash")
        pieces = [await write(s, ref, 100 * KIB, data[100 * KIB:]), await write(s, ref, 0, data[:100 * KIB])]
        pieces.sort(key=lambda p: p.start)
        with pytest.raises(ConnectionResetError):
            await s.assemble(pieces, NS, "crash.bin")
        assert await s.stat(NS, "crash.bin") is None
        for _ in range(2):  # the engine's retry, and a retry of the retry
            info = await s.assemble(pieces, NS, "crash.bin")
            assert info.size == len(data)
            assert await read(s, "crash.bin") == data
        await s.discard(ref)
        with pytest.raises(PiecesMissing):
            await s.assemble(pieces, NS, "crash.bin")
        assert await read(s, "crash.bin") == data


async def test_garbage_collection_removes_dead_staging_and_late_blocks() -> None:
    s = store(orphan_age=3600.0, scan_interval=0.0)
    live = await pieces_of(s, b"live bytes", 4)
    dead = await pieces_of(s, b"dead bytes", 4)
    assert await s.collect_garbage(lambda ref: _const(False)) == 0  # young: maybe a session being created
    s.orphan_age = -1.0
    late = await s.open_piece(dead[0].ref, 100, durable=True)  # a stray writer after the session died
    await late.write(b"late")
    await late.finish(True)
    assert await s.collect_garbage(lambda ref: _const(ref == live[0].ref)) == 1
    with container() as c:
        left = {b.name for b in c.list_blobs(name_starts_with=f"{s.prefix}staging/", include=["uncommittedblobs"])}
    assert left == {f"{s.prefix}staging/{live[0].ref}/00000000"}
    await s.assemble(live, NS, "live")
    assert await read(s, "live") == b"live bytes"
    with pytest.raises(PiecesMissing):
        await s.assemble(dead, NS, "dead")
    s.scan_interval = 3600.0
    assert await s.collect_garbage(lambda ref: _const(False)) == 1  # the live ref, now dead
    assert await s.collect_garbage(lambda ref: _const(False)) == 0  # rate-limited: no second listing


async def _const(value: bool) -> bool:
    return value


async def test_pieces_of_another_store_are_missing() -> None:
    s = store()
    ref = s.new_ref("foreign")
    for handle in ("", "0123456789abcdef", "az1:10000000:short"):
        with pytest.raises(PiecesMissing):
            await s.assemble([Piece(ref, 0, 5, handle)], NS, "x")


# -- errors -------------------------------------------------------------------------------------------
def test_every_sdk_exception_maps_to_a_core_error() -> None:
    classes = [c for _, c in inspect.getmembers(sdk_errors, inspect.isclass) if issubclass(c, sdk_errors.AzureError)]
    assert len(classes) > 10
    for cls in classes:
        try:
            exc = cls(message="boom")
        except Exception:  # ODataV4Error wants a real response: an instance without one will do
            exc = cls.__new__(cls)
            Exception.__init__(exc, "boom")
        assert isinstance(from_sdk(exc), AzureStoreError), cls  # no answer: the store is unreachable
        if isinstance(exc, sdk_errors.HttpResponseError):
            for status in (400, 403, 404, 409, 412, 413, 500, 503):
                exc.status_code = status
                assert isinstance(from_sdk(exc), ChunkdError), (cls, status)
            exc.status_code, exc.error_code = 400, StorageErrorCode.INVALID_BLOCK_LIST  # as the SDK sets it
            assert isinstance(from_sdk(exc), PiecesMissing)


@pytest.mark.parametrize("status", [400, 403, 404, 409, 412, 413, 416, 500, 503])
def test_every_storage_error_code_maps_to_a_core_error(status: int) -> None:
    for code in StorageErrorCode:
        assert isinstance(from_status(status, code.value), ChunkdError), code
    assert isinstance(from_status(status, None), ChunkdError)


def test_the_codes_that_matter_map_to_what_the_engine_expects() -> None:
    assert isinstance(from_status(404, "BlobNotFound"), ObjectNotFound)
    assert isinstance(from_status(400, "InvalidBlockList"), PiecesMissing)
    assert isinstance(from_status(412, "ConditionNotMet"), Conflict)
    assert isinstance(from_status(404, "ContainerNotFound"), AzureStoreError)  # the operator's problem
    assert isinstance(from_status(403, "AuthenticationFailed"), AzureStoreError)
    assert isinstance(from_status(503, "ServerBusy"), AzureStoreError)


async def test_errors_from_a_real_server_are_mapped() -> None:
    wrong = parse_target(azurite.storage_url("azure-tests", "wrong-key"),
                         {"AZURE_STORAGE_KEY": "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="})
    bad = AzureStore(wrong)
    azurite.opened.append(bad)
    with pytest.raises(AzureStoreError):
        await bad.stat(NS, "x")
    w = await bad.open_piece(bad.new_ref("w"), 0, durable=True)
    await w.write(b"x")
    with pytest.raises(AzureStoreError):
        await w.finish(True)
    s = store()
    assert await s.stat(NS, "missing") is None
    with pytest.raises(FileNotFoundError):
        await read(s, "missing")
    with pytest.raises(FileNotFoundError):
        await s.copy(NS, "missing", "dst")
    # a container that does not exist yet is created on first use, reads included
    fresh = AzureStore(parse_target(azurite.storage_url(f"fresh-{secrets.token_hex(3)}"),
                                    {"AZURE_STORAGE_KEY": azurite.KEY}))
    azurite.opened.append(fresh)
    assert await fresh.walk(NS, "") == []
    assert await fresh.stat(NS, "x") is None


# -- configuration ------------------------------------------------------------------------------------
def test_storage_urls_and_keys() -> None:
    t = parse_target("azure://acct/cont/some/prefix?endpoint=http://127.0.0.1:1/acct/", {"AZURE_STORAGE_KEY": "a2V5"})
    assert (t.account, t.container, t.prefix, t.endpoint, t.key) == ("acct", "cont", "some/prefix/",
                                                                      "http://127.0.0.1:1/acct", "a2V5")
    t = parse_target("azure://acct/cont", {"AZURE_STORAGE_CONNECTION_STRING":
                                           "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;"
                                           "EndpointSuffix=core.windows.net"})
    assert (t.endpoint, t.key, t.prefix) == ("https://acct.blob.core.windows.net", "a2V5", "")
    t = parse_target("azure://acct/cont", {"AZURE_STORAGE_CONNECTION_STRING":
                                           "BlobEndpoint=http://127.0.0.1:2/acct;SharedAccessSignature=sv=1&sig=x"})
    assert (t.endpoint, t.key, t.sas) == ("http://127.0.0.1:2/acct", None, "sv=1&sig=x")
    for url, env in [("azure://acct", {"AZURE_STORAGE_KEY": "k"}),
                     ("azure://acct/c?region=x", {"AZURE_STORAGE_KEY": "k"}),
                     ("azure://acct/c", {}),
                     ("azure://acct/c", {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=other;AccountKey=k"})]:
        with pytest.raises(ValueError):
            parse_target(url, env)


def test_registry_opens_the_azure_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", azurite.KEY)
    opened = open_byte_store("azure://devstoreaccount1/c?endpoint=http://127.0.0.1:9/devstoreaccount1", str(tmp_path))
    assert isinstance(opened, AzureStore) and opened.conn.target.container == "c"
    monkeypatch.delenv("AZURE_STORAGE_KEY")
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(ValueError, match="AZURE_STORAGE_KEY"):
        open_byte_store("azure://devstoreaccount1/c", str(tmp_path))
