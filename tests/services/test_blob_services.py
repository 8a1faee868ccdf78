"""The container, blob and block services: records, the engine's clock, Put Block's cost, the seal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chunkd.core.body import Body
from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.services.blob_model import (
    K_BLOB,
    K_CONTAINER,
    Blob,
    BlobFault,
    BlobProps,
    Conditions,
    Container,
    ContainerState,
    FaultCode,
)
from chunkd.services.blobs import BlobServices
from chunkd.services.envelope import Stored
from tests.services.conftest import FakeClock

pytestmark = pytest.mark.anyio
ALICE = Principal(kind="user", tenant="t1", user="alice")
NONE = Conditions()


async def body(*parts: bytes) -> Body:
    for part in parts:
        yield part


async def read(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([p async for p in it])


async def test_a_container_round_trips_through_its_resource_document() -> None:
    c = Container(id="c1", owner="conn", state=ContainerState.VALIDATED, session_expires=10.0,
                  container_expires=20.0, etag="0x8D1", validated={"a.csv": "0x8D2"},
                  stored=Stored("t1", "user:t1:alice", 1.0, 2.0, 3))
    res = c.to_resource()
    assert (res.kind, res.id, res.parent, res.tenant, res.owner, res.version) == (
        K_CONTAINER, "c1", "conn", "t1", "user:t1:alice", 3)
    # the layout containers have always been stored in (and the Put Block guard reads "state")
    assert res.data == {"state": "validated", "owner": "conn", "sessionExpires": 10.0, "containerExpires": 20.0,
                        "etag": "0x8D1", "validated": {"a.csv": "0x8D2"}}
    assert Container.from_resource(res) == c
    assert "validated" not in Container(id="c2", owner="o", state=ContainerState.OPEN, session_expires=1,
                                        container_expires=2, etag="e").to_resource().data


async def test_a_blob_round_trips_and_reads_documents_without_optional_fields() -> None:
    b = Blob(container="c1", name="dir/ä.csv", object="c1/abc", size=7, etag="0x8D3", created=5.0, modified=6.0,
             props=BlobProps(content_type="text/csv", cache_control="no-cache", md5="bWQ1", meta={"k": "v"}),
             blocks=(("QUE=", 3), ("QkI=", 4)), stored=Stored("t1", "app:t1:blobcontainer:c1", 5.0, 6.0, 2))
    res = b.to_resource()
    assert (res.kind, res.parent) == (K_BLOB, "c1") and res.id.startswith("c1:")
    assert res.data["blocks"] == [["QUE=", 3], ["QkI=", 4]] and res.data["contentType"] == "text/csv"
    assert Blob.from_resource(res) == b
    bare = Resource(kind=K_BLOB, id="c1:x", tenant="t1", owner="o", parent="c1", created_at=1.0, modified_at=2.0,
                    data={"name": "n", "object": "c1/o", "size": 0, "etag": "e"})
    loaded = Blob.from_resource(bare)
    assert (loaded.created, loaded.modified, loaded.blocks, loaded.props) == (1.0, 2.0, (), BlobProps())


async def test_container_lifetimes_run_on_the_engine_clock(engine: Engine, blob: BlobServices,
                                                           clock: FakeClock) -> None:
    c = await blob.containers.create(ALICE, "conn", session_ttl=100, container_ttl=200)
    assert (c.session_expires, c.container_expires, c.tenant) == (1_000_100.0, 1_000_200.0, "t1")
    clock.now = 1_000_199.0
    assert await blob.containers.get(c.id) == c
    clock.now = 1_000_201.0
    assert await blob.containers.get(c.id) is None  # expiry is noticed on touch, and discards it
    assert await engine.get_resource(K_CONTAINER, c.id) is None


async def test_blob_times_come_from_the_engine_clock(blob: BlobServices, clock: FakeClock) -> None:
    c = await blob.containers.create(ALICE, "conn", 100, 200)
    first = await blob.blobs.put(c, "a.csv", body(b"x,y\n"), BlobProps(), NONE, digest=lambda: "bWQ1")
    assert (first.created, first.modified, first.size, first.props.md5) == (clock.now, clock.now, 4, "bWQ1")
    clock.now += 10
    second = await blob.blobs.put(c, "a.csv", body(b"x,y,z\n"), BlobProps(), NONE)
    assert (second.created, second.modified) == (first.created, clock.now) and second.etag != first.etag
    clock.now += 10
    third = await blob.blobs.set_properties(c, "a.csv", lambda p: BlobProps(content_type="text/csv", meta=p.meta),
                                            NONE)
    assert (third.modified, third.props.content_type, third.object) == (clock.now, "text/csv", second.object)
    assert await read(blob.blobs.read(third, 0, third.size)) == b"x,y,z\n"


async def test_put_block_costs_two_metadata_transactions(engine: Engine, blob: BlobServices) -> None:
    c = await blob.containers.create(ALICE, "conn", 100, 200)
    counted = []
    for block_id, data in (("QUE=", b"aaa"), ("QkI=", b"bbbb")):  # the first one also creates the block session
        before = engine.store.transactions  # type: ignore[attr-defined]
        await blob.blocks.stage(c.id, "big.bin", block_id, len(data), body(data))
        counted.append(engine.store.transactions - before)  # type: ignore[attr-defined]
    assert counted == [2, 2]
    assert list(await blob.blocks.staged(c.id, "big.bin")) == ["QUE=", "QkI="]


async def test_a_block_list_publishes_staged_and_committed_blocks(blob: BlobServices) -> None:
    c = await blob.containers.create(ALICE, "conn", 100, 200)
    await blob.blocks.stage(c.id, "f", "QUE=", 3, body(b"aaa"))
    await blob.blocks.stage(c.id, "f", "QkI=", 2, body(b"bb"))
    done = await blob.blobs.commit_block_list(c, "f", [("Latest", "QkI="), ("Uncommitted", "QUE=")], BlobProps(),
                                              NONE)
    assert done.blocks == (("QkI=", 2), ("QUE=", 3))
    assert await read(blob.blobs.read(done, 0, done.size)) == b"bbaaa"
    assert await blob.blocks.staged(c.id, "f") == {}
    await blob.blocks.stage(c.id, "f", "Q0M=", 1, body(b"c"))
    again = await blob.blobs.commit_block_list(c, "f", [("Committed", "QUE="), ("Latest", "Q0M=")], BlobProps(),
                                               NONE)
    assert await read(blob.blobs.read(again, 0, again.size)) == b"aaac"
    with pytest.raises(BlobFault) as bad:  # a block id of another length than the committed ones'
        await blob.blocks.stage(c.id, "f", "QUFBQQ==", 1, body(b"d"))
    assert bad.value.code is FaultCode.INVALID_BLOCK
    with pytest.raises(BlobFault) as missing:
        await blob.blobs.commit_block_list(c, "f", [("Uncommitted", "QUE=")], BlobProps(), NONE)
    assert missing.value.code is FaultCode.INVALID_BLOCK_LIST


async def test_conditions_refuse_and_change_nothing(blob: BlobServices) -> None:
    c = await blob.containers.create(ALICE, "conn", 100, 200)
    first = await blob.blobs.put(c, "a", body(b"1"), BlobProps(), NONE)
    for cond, code in ((Conditions(if_none_match="*"), FaultCode.BLOB_EXISTS),
                       (Conditions(if_match='"0x8D0"'), FaultCode.CONDITION_NOT_MET),
                       (Conditions(if_none_match=f'"{first.etag}"'), FaultCode.CONDITION_NOT_MET)):
        with pytest.raises(BlobFault) as refused:
            await blob.blobs.put(c, "a", body(b"2"), BlobProps(), cond)
        assert refused.value.code is code
    with pytest.raises(BlobFault) as absent:
        await blob.blobs.put(c, "b", body(b"2"), BlobProps(), Conditions(if_match="*"))
    assert absent.value.code is FaultCode.BLOB_NOT_FOUND
    assert await blob.blobs.get(c.id, "a") == first and await blob.blobs.get(c.id, "b") is None


async def test_a_sealed_container_keeps_its_set_and_refuses_writes(blob: BlobServices) -> None:
    c = await blob.containers.create(ALICE, "conn", 100, 200)
    kept = await blob.blobs.put(c, "a.csv", body(b"1"), BlobProps(), NONE)
    assert [b.name for b in await blob.containers.seal(c.id)] == ["a.csv"]
    sealed = await blob.containers.get(c.id)
    assert sealed is not None and sealed.state is ContainerState.VALIDATED and sealed.validated == {
        "a.csv": kept.etag}
    for write in (blob.blobs.put(c, "a.csv", body(b"2"), BlobProps(), NONE),
                  blob.blobs.put(c, "b.csv", body(b"2"), BlobProps(), NONE),
                  blob.blocks.stage(c.id, "b.csv", "QUE=", 1, body(b"2")),
                  blob.containers.require(c.id, writable=True)):
        with pytest.raises(BlobFault) as refused:
            await write
        assert refused.value.code is FaultCode.FINALISED
    assert await blob.blobs.get(c.id, "a.csv") == kept and await blob.blobs.get(c.id, "b.csv") is None
    await blob.containers.discard(c.id)
    with pytest.raises(BlobFault) as gone:
        await blob.blocks.stage(c.id, "b.csv", "QUE=", 1, body(b"2"))
    assert gone.value.code is FaultCode.CONTAINER_NOT_FOUND
