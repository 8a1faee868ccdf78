"""What the S3 byte store does beyond the conformance suite, against a real moto server: small pieces are
one PUT each and coalesced at commit, large pieces are copied server-side, pieces of unknown length
stream through a multipart upload, garbage collection aborts orphan multipart uploads, and the client
libraries' errors become chunkd's. Data stays in the tens of MiB (moto manages 35-75 MB/s)."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import botocore.exceptions as boto_errors
import obstore
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from obstore import exceptions as obstore_errors

import chunkd.storage._s3_assembly as assembly
import chunkd.storage._s3_pieces as pieces_mod
from chunkd.core.errors import ChunkdError, InvalidPath, PiecesMissing
from chunkd.core.models import Piece
from chunkd.storage import open_byte_store
from chunkd.storage._s3_assembly import MAX_PART, MIN_PART, PART_TARGET, Copy, Upload, plan
from chunkd.storage._s3_config import parse_url
from chunkd.storage._s3_errors import S3Error, StorageUnavailable, UploadVanished, translate
from chunkd.storage._s3_pieces import Source
from chunkd.storage.s3 import S3Store
from tests.conformance.s3moto import BUCKET, moto

MiB = 1 << 20
NS = "s3test"

pytestmark = pytest.mark.anyio


@pytest.fixture
def store() -> S3Store:
    return S3Store(parse_url(moto().url()), scan_interval=0.0)


@pytest.fixture
def admin() -> Any:
    return moto().client()


@pytest.fixture
def gets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of every GET this process makes through obstore (what passes through chunkd)."""
    moved: list[int] = []
    real = obstore.get_async

    async def counting(store: Any, path: str, *, options: Any = None) -> Any:
        result = await real(store, path, options=options)
        lo, hi = result.range
        moved.append(hi - lo)
        return result

    monkeypatch.setattr(obstore, "get_async", counting)
    return moved


def listing(admin: Any, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found += page.get("Contents", [])
    return found


def uploads(admin: Any, prefix: str) -> list[dict[str, Any]]:
    return admin.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])


async def write_piece(store: S3Store, ref: str, start: int, data: bytes, step: int = MiB) -> Piece:
    w = await store.open_piece(ref, start, durable=True)
    for i in range(0, len(data), step):
        await w.write(data[i:i + step])
    return await w.finish(True)


async def read_all(store: S3Store, key: str) -> bytes:
    return b"".join([c async for c in store.read(NS, key, 0, 1 << 40)])


# -- pieces and assembly --------------------------------------------------------------------------
async def test_64k_pieces_are_one_put_each_and_coalesced_at_commit(store: S3Store, admin: Any,
                                                                     gets: list[int]) -> None:
    ref = store.new_ref("tus")
    data = os.urandom(160 * 64 * 1024)  # 10 MiB of tus appends
    recorded = [await write_piece(store, ref, i, data[i:i + 65536]) for i in range(0, len(data), 65536)]
    staged = listing(admin, store.keys.ref_prefix(ref))
    assert len(staged) == 160 and {o["Size"] for o in staged} == {65536}
    assert all("-" not in o["ETag"].strip('"') for o in staged)  # plain PUTs, no multipart per piece
    assert uploads(admin, store.keys.root) == []
    info = await store.assemble(recorded, NS, "tus/file.bin")
    assert info.size == len(data)
    final = admin.head_object(Bucket=BUCKET, Key=store.keys.object(NS, "tus/file.bin"))
    assert final["ETag"].strip('"').endswith("-2")  # 160 pieces became two parts (8 MiB + 2 MiB)
    assert sum(gets) == len(data)  # each small piece read once, nothing else
    assert await read_all(store, "tus/file.bin") == data
    again = await store.assemble(recorded, NS, "tus/file.bin")  # idempotent: the pieces are still there
    assert again.size == len(data)
    assert len(listing(admin, store.keys.ref_prefix(ref))) == 160


async def test_large_pieces_are_copied_server_side(store: S3Store, admin: Any, gets: list[int]) -> None:
    ref = store.new_ref("sf")
    big1, big2 = os.urandom(6 * MiB), os.urandom(11 * MiB)
    small = [os.urandom(100_000) for _ in range(3)]
    at = 0
    recorded = []
    for chunk in (big1, *small, big2, small[0]):
        recorded.append(await write_piece(store, ref, at, chunk))
        at += len(chunk)
    whole = big1 + b"".join(small) + big2 + small[0]
    info = await store.assemble(recorded, NS, "app/pkg.zip")
    assert info.size == len(whole)
    small_bytes = 4 * 100_000
    # only the small pieces, and the head of big2 that lifts the run before it to 5 MiB, were read
    assert sum(gets) == small_bytes + (MIN_PART - 300_000)
    assert await read_all(store, "app/pkg.zip") == whole
    gets.clear()
    one = await write_piece(store, store.new_ref("single"), 0, big1)
    await store.assemble([one], NS, "single.bin")  # one piece: CopyObject
    assert gets == []
    assert hashlib.sha256(await read_all(store, "single.bin")).digest() == hashlib.sha256(big1).digest()


async def test_unknown_length_piece_streams_through_a_multipart_upload(store: S3Store, admin: Any) -> None:
    ref = store.new_ref("stream")
    data = os.urandom(20 * MiB)
    w = await store.open_piece(ref, 0, durable=True)
    for i in range(0, 18 * MiB, 256 * 1024):  # the writer is never told the length
        await w.write(data[i:i + 256 * 1024])
    pending = uploads(admin, store.keys.ref_prefix(ref))
    assert len(pending) == 1  # bytes beyond the buffer have left the process already
    parts = admin.list_parts(Bucket=BUCKET, Key=pending[0]["Key"], UploadId=pending[0]["UploadId"])["Parts"]
    assert parts and all(p["Size"] == pieces_mod.PIECE_BUFFER for p in parts)
    await w.write(data[18 * MiB:])
    piece = await w.finish(True)
    assert (piece.start, piece.end) == (0, len(data))
    assert uploads(admin, store.keys.ref_prefix(ref)) == []
    assert await store.assemble([piece], NS, "streamed") and await read_all(store, "streamed") == data


async def test_piece_over_a_segment_continues_in_further_objects(store: S3Store, admin: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pieces_mod, "SEGMENT", 6 * MiB)  # 5 GiB in production
    ref = store.new_ref("seg")
    data = os.urandom(14 * MiB)
    piece = await write_piece(store, ref, 0, data)
    assert piece.handle.endswith(f"#{6 * MiB}")
    assert sorted(o["Size"] for o in listing(admin, store.keys.ref_prefix(ref))) == [2 * MiB, 6 * MiB, 6 * MiB]
    await store.assemble([piece], NS, "segmented")
    assert await read_all(store, "segmented") == data


async def test_more_parts_than_s3_allows_go_through_intermediates(store: S3Store, admin: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assembly, "MAX_PARTS", 2)  # 10,000 in production
    ref = store.new_ref("many")
    chunks = [os.urandom(5 * MiB + i) for i in range(3)] + [b"tail"]
    at, recorded = 0, []
    for c in chunks:
        recorded.append(await write_piece(store, ref, at, c))
        at += len(c)
    await store.assemble(recorded, NS, "many.bin")
    assert await read_all(store, "many.bin") == b"".join(chunks)
    assert listing(admin, store.keys.tmp) == []  # intermediates removed
    assert uploads(admin, store.keys.root) == []


async def test_missing_or_foreign_pieces_publish_nothing(store: S3Store, admin: Any) -> None:
    ref = store.new_ref("gone")
    big = await write_piece(store, ref, 0, os.urandom(6 * MiB))
    small = await write_piece(store, ref, 6 * MiB, b"x" * 10)
    admin.delete_object(Bucket=BUCKET, Key=store.keys.piece(ref, big.handle))
    for recorded in ([big, small], [small, dataclasses.replace(small, handle="0123abcd")], [big]):
        with pytest.raises(PiecesMissing):
            await store.assemble(recorded, NS, "never")
    assert await store.stat(NS, "never") is None
    assert uploads(admin, store.keys.root) == []  # the failed multipart upload was aborted


async def test_copy_is_server_side_also_beyond_one_copy_request(store: S3Store, admin: Any, gets: list[int],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(13 * MiB)
    await store.assemble([await write_piece(store, store.new_ref("c"), 0, data)], NS, "src.bin")
    assert (await store.copy(NS, "src.bin", "a/copy.bin")).size == len(data)  # CopyObject
    monkeypatch.setattr(assembly, "MAX_PART", 7 * MiB)  # 5 GiB in production: beyond it, ranged part copies
    assert (await store.copy(NS, "src.bin", "b/copy.bin")).size == len(data)
    etag = admin.head_object(Bucket=BUCKET, Key=store.keys.object(NS, "b/copy.bin"))["ETag"]
    assert etag.strip('"').endswith("-2")  # two UploadPartCopy ranges
    assert gets == []  # no byte came through this process
    for key in ("a/copy.bin", "b/copy.bin"):
        assert await read_all(store, key) == data
    with pytest.raises(FileNotFoundError):
        await store.copy(NS, "missing", "x")


# -- garbage --------------------------------------------------------------------------------------
async def test_gc_aborts_orphan_uploads_and_discards_dead_refs(store: S3Store, admin: Any) -> None:
    live, dead = store.new_ref("live"), store.new_ref("dead")
    await write_piece(store, live, 0, b"live")
    await write_piece(store, dead, 0, b"dead")
    w = await store.open_piece(dead, 4, durable=True)  # a writer whose node died mid-piece
    await w.write(os.urandom(9 * MiB))
    for _ in range(100):  # its first part is on its way: wait until the store has it
        up = uploads(admin, store.keys.ref_prefix(dead))
        if up and admin.list_parts(Bucket=BUCKET, Key=up[0]["Key"], UploadId=up[0]["UploadId"]).get("Parts"):
            break
        await anyio.sleep(0.05)
    await w.abort()
    crashed = admin.create_multipart_upload(Bucket=BUCKET, Key=store.keys.object(NS, "crashed"))["UploadId"]
    admin.upload_part(Bucket=BUCKET, Key=store.keys.object(NS, "crashed"), UploadId=crashed, PartNumber=1,
                      Body=b"p" * 100)
    assert len(uploads(admin, store.keys.root)) == 2

    async def is_live(ref: str) -> bool:
        return ref == live

    # within the graces (moto reports every upload as initiated in 2010: recent parts keep them alive)
    assert await store.collect_garbage(is_live) == 0
    assert len(uploads(admin, store.keys.root)) == 2
    assert listing(admin, store.keys.ref_prefix(dead))
    other_node = S3Store(store.settings, orphan_age=-1.0, upload_grace=-1.0, scan_interval=0.0)
    assert await other_node.collect_garbage(is_live) == 3
    assert uploads(admin, store.keys.root) == []
    assert listing(admin, store.keys.ref_prefix(dead)) == []
    assert len(listing(admin, store.keys.ref_prefix(live))) == 1


# -- plan -----------------------------------------------------------------------------------------
sizes = st.one_of(st.integers(0, 6 * MiB), st.integers(5 * MiB, 12 * MiB), st.integers(MAX_PART - 10, 2 * MAX_PART + 5))


@settings(max_examples=300, deadline=None)
@given(st.lists(sizes, max_size=40))
def test_plan_obeys_s3_part_rules_and_reads_little(lengths: list[int]) -> None:
    sources = [Source(f"k{i}", 7, n) for i, n in enumerate(lengths)]
    parts = plan(sources)
    for p in parts[:-1]:
        assert p.size >= MIN_PART
    ranges: list[Source] = []
    read = 0
    for p in parts:
        if isinstance(p, Copy):
            assert p.size <= MAX_PART
            ranges.append(p.src)
        else:
            assert isinstance(p, Upload) and p.size < PART_TARGET + MIN_PART
            ranges += p.srcs
            read += p.size
    assert _merged(ranges) == _merged([s for s in sources if s.length])
    bound = sum(n if n < MIN_PART else min(n, 2 * MIN_PART) for n in lengths)
    assert read <= bound


def _merged(ranges: list[Source]) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    for r in ranges:
        if out and out[-1][0] == r.key and out[-1][2] == r.offset:
            out[-1] = (r.key, out[-1][1], r.offset + r.length)
        else:
            out.append((r.key, r.offset, r.offset + r.length))
    return out


# -- errors ---------------------------------------------------------------------------------------
def _library_exceptions() -> Iterator[BaseException]:
    for module in (boto_errors, obstore_errors):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            ours = cls.__module__.split(".")[0] in ("botocore", "obstore", "builtins")
            if ours and issubclass(cls, Exception) and not issubclass(cls, Warning):
                if issubclass(cls, boto_errors.ClientError):
                    yield cls({"Error": {"Code": "Whatever", "Message": "m"}}, "Op")
                    continue
                exc = cls.__new__(cls)  # botocore's need keyword arguments for their messages
                Exception.__init__(exc, "Generic S3 error: Server returned non-2xx status code: 400 Bad Request")
                yield exc


def _client_error(code: str, status: int) -> boto_errors.ClientError:
    return boto_errors.ClientError({"Error": {"Code": code, "Message": "m"},
                                    "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_every_library_exception_becomes_a_chunkd_one() -> None:
    seen = 0
    for exc in _library_exceptions():
        mapped = translate(exc)
        assert isinstance(mapped, ChunkdError | FileNotFoundError), (type(exc), mapped)
        seen += 1
    assert seen > 40  # botocore's whole tree and obstore's
    assert isinstance(translate(_client_error("NoSuchKey", 404), PiecesMissing), PiecesMissing)
    assert isinstance(translate(_client_error("404", 404)), FileNotFoundError)  # HEAD and moto's part copy
    assert isinstance(translate(_client_error("InvalidRange", 416), PiecesMissing), PiecesMissing)
    assert isinstance(translate(_client_error("NoSuchUpload", 404)), UploadVanished)
    assert isinstance(translate(_client_error("KeyTooLongError", 400)), InvalidPath)
    for code, status in [("SlowDown", 503), ("AccessDenied", 403), ("NoSuchBucket", 404), ("InternalError", 500)]:
        assert isinstance(translate(_client_error(code, status)), StorageUnavailable), code
    bad = translate(_client_error("EntityTooSmall", 400))
    assert type(bad) is S3Error and "EntityTooSmall" in str(bad)
    assert isinstance(translate(boto_errors.EndpointConnectionError(endpoint_url="http://x")), StorageUnavailable)
    assert isinstance(translate(boto_errors.ReadTimeoutError(endpoint_url="http://x")), StorageUnavailable)
    assert isinstance(translate(FileNotFoundError("x"), PiecesMissing), PiecesMissing)
    assert isinstance(translate(obstore_errors.PermissionDeniedError("no")), StorageUnavailable)
    assert isinstance(translate(ValueError("Could not parse path: bad")), InvalidPath)
    other = ValueError("not the library's")
    assert translate(other) is other


async def test_unreachable_store_and_missing_bucket_are_clear_errors(store: S3Store) -> None:
    closed = dataclasses.replace(parse_url(moto().url().replace(str(moto().port), str(_closed_port()))),
                                 retry_timeout=0.5)
    down = S3Store(closed)
    with pytest.raises(StorageUnavailable):
        await down.stat(NS, "x")
    with pytest.raises(StorageUnavailable):
        await read_all(down, "x")
    with pytest.raises(StorageUnavailable):
        await write_piece(down, down.new_ref("x"), 0, b"data")
    with pytest.raises(StorageUnavailable, match="does not exist"):
        S3Store(dataclasses.replace(store.settings, bucket="no-such-bucket")).check_bucket()
    with pytest.raises(FileNotFoundError):
        await read_all(store, "missing")


def _closed_port() -> int:
    from tests.serverproc import free_port

    return free_port()  # nothing listens there once the probe socket is closed


# -- selection by URL -----------------------------------------------------------------------------
def test_selected_by_url_with_a_clear_error_for_bad_ones(tmp_path: Any) -> None:
    url = moto().url("sel")
    chosen = open_byte_store(url, str(tmp_path))
    assert isinstance(chosen, S3Store)
    assert (chosen.settings.bucket, chosen.settings.prefix, chosen.settings.endpoint) == (
        BUCKET, "sel/", moto().endpoint)
    assert parse_url("s3://bucket-a").prefix == "" and parse_url("s3://bucket-a/x/y/").prefix == "x/y/"
    for bad, why in [("s3://B!/x", "bucket"), ("s3://bucket-a?colour=red", "unknown S3 storage option"),
                     ("s3://bucket-a/../x", "prefix"), ("s3://bucket-a?endpoint=ftp://h", "http")]:
        with pytest.raises(ValueError, match=why):
            open_byte_store(bad, str(tmp_path))


def test_without_the_extra_local_storage_still_works(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("chunkd.storage.s3") or m.startswith("chunkd.storage._s3")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "obstore", None)  # as if not installed: importing it fails
    with pytest.raises(RuntimeError, match=r"pip install 'chunkd\[s3\]'"):
        open_byte_store(moto().url(), str(tmp_path))
    assert open_byte_store("local", str(tmp_path)).name == "local"

