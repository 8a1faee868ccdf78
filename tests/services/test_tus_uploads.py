"""The tus service in-process over real SQLite and local files: its typed records as they are stored, the
deferred length, unfinished finals completed from another "process" (a second Engine on the same data),
and times taken from the engine's clock."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from chunkd.core.engine import Engine
from chunkd.core.errors import LengthMismatch, SessionGone
from chunkd.core.models import SessionState
from chunkd.core.resources import Resource
from chunkd.services.tus_records import (
    NAMESPACE,
    PENDING_FINAL,
    Concat,
    FaultCode,
    NewUpload,
    PendingFinal,
    TusFault,
    Upload,
    UploadFields,
)
from chunkd.services.tus_uploads import TusUploads
from tests.core import test_engine as base
from tests.core.test_engine import ALICE, FakeClock, body

clock, engines, engine = base.clock, base.engines, base.engine  # their fixtures


async def content(engine: Engine, key: str) -> bytes:
    return b"".join([p async for p in engine.read_object(NAMESPACE, key, 0, 1 << 40)])


def test_upload_fields_read_the_stored_format() -> None:
    """Sessions stored by earlier versions keep working: this is the extra dict they hold."""
    stored = {"meta": [["filename", "YS5wZGY="], ["flag", ""]], "concat": "final", "parts": ["a" * 32, "b" * 32]}
    fields = UploadFields.from_extra(stored)
    assert fields == UploadFields(Concat.FINAL, ("a" * 32, "b" * 32), (("filename", "YS5wZGY="), ("flag", "")))
    assert fields.to_extra() == stored
    assert UploadFields.from_extra({}) == UploadFields()
    assert UploadFields().to_extra() == {"meta": []}


def test_pending_final_converts_to_and_from_its_resource() -> None:
    link = PendingFinal(final="f" * 32, part="p" * 32)
    resource = Resource(kind=PENDING_FINAL, id=link.resource_id, tenant="t", owner="o", data=link.to_data(),
                        created_at=0.0, modified_at=0.0, parent=link.part)
    assert resource.id == f"{'f' * 32}.{'p' * 32}"
    assert PendingFinal.from_resource(resource) == link


@pytest.mark.anyio
async def test_created_upload_round_trips_through_the_store(engine: Engine) -> None:
    uploads = TusUploads(engine)
    new = NewUpload(None, Concat.PARTIAL, metadata=(("filename", "YS5wZGY="),), text={"filename": "a.pdf"})
    created = await uploads.create(ALICE, new)
    stored = Upload.of(await engine.get_session(created.id))
    assert stored.fields == UploadFields(Concat.PARTIAL, (), (("filename", "YS5wZGY="),)) == created.fields
    assert stored.session.name == "a.pdf" and stored.session.length is None and not stored.session.commit_on_complete


@pytest.mark.anyio
async def test_deferred_length_completes_and_publishes(engine: Engine) -> None:
    uploads = TusUploads(engine)
    upload = await uploads.create(ALICE, NewUpload(None))
    upload = await uploads.append(upload.id, ALICE, 0, body(b"hello"), 5)
    assert upload.session.length is None and not upload.finished
    with pytest.raises(LengthMismatch):  # shorter than what was received: nothing changes
        await uploads.append(upload.id, ALICE, 5, body(b""), 0, length=4)
    assert (await engine.get_session(upload.id)).length is None
    done = await uploads.append(upload.id, ALICE, 5, body(b""), 0, length=5)  # the empty PATCH at the end
    assert done.finished and done.session.length == 5
    assert await content(engine, upload.session.key) == b"hello"


@pytest.mark.anyio
async def test_deferred_length_of_a_partial_does_not_publish_it(engine: Engine) -> None:
    uploads = TusUploads(engine)
    part = await uploads.create(ALICE, NewUpload(None, Concat.PARTIAL))
    await uploads.append(part.id, ALICE, 0, body(b"abc"), 3)
    session = await uploads.set_length(part.id, ALICE, 3)
    assert session.complete and session.state is SessionState.OPEN  # a final consumes it later


@pytest.mark.anyio
async def test_refusals_change_nothing(engine: Engine) -> None:
    uploads = TusUploads(engine, max_size=10)
    deferred = await uploads.create(ALICE, NewUpload(None))
    with pytest.raises(TusFault) as info:
        await uploads.append(deferred.id, ALICE, 0, body(b"x" * 11), 11)
    assert info.value.code is FaultCode.MAX_SIZE_EXCEEDED
    with pytest.raises(TusFault) as info:
        await uploads.create(ALICE, NewUpload(11))
    assert info.value.code is FaultCode.MAX_SIZE_EXCEEDED
    part = await uploads.create(ALICE, NewUpload(2, Concat.PARTIAL))
    await uploads.append(part.id, ALICE, 0, body(b"ab"), 2)
    final = await uploads.create(ALICE, NewUpload(None, Concat.FINAL, (part.id,)))
    assert final.finished
    with pytest.raises(TusFault) as info:
        await uploads.append(final.id, ALICE, 2, body(b"c"), 1)
    assert info.value.code is FaultCode.MODIFY_FINAL
    with pytest.raises(TusFault) as info:  # the part was consumed
        await uploads.create(ALICE, NewUpload(None, Concat.FINAL, (part.id,)))
    assert info.value.code is FaultCode.INVALID_CONCAT
    assert (await engine.get_session(deferred.id)).received == 0
    assert await content(engine, final.session.key) == b"ab"


@pytest.mark.anyio
async def test_unfinished_final_is_finished_by_its_last_part_in_another_process(
        engines: Callable[..., Engine]) -> None:
    one, two = await engines(), await engines()  # type: ignore[misc]
    first, second = TusUploads(one), TusUploads(two)
    data = [os.urandom(n) for n in (700, 1, 3000)]
    parts = [await first.create(ALICE, NewUpload(len(d), Concat.PARTIAL)) for d in data]
    await first.append(parts[0].id, ALICE, 0, body(data[0]), len(data[0]))
    final = await first.create(ALICE, NewUpload(None, Concat.FINAL, tuple(p.id for p in parts)))
    assert not final.finished and not final.offset_known and final.session.length == 3701
    links = [PendingFinal.from_resource(r) for p in parts[1:]
             for r in await one.list_resources(PENDING_FINAL, parent=p.id)]
    assert links == [PendingFinal(final.id, parts[1].id), PendingFinal(final.id, parts[2].id)]
    await second.append(parts[1].id, ALICE, 0, body(data[1]), 1)
    assert not (await first.get(final.id, ALICE)).finished
    await second.append(parts[2].id, ALICE, 0, body(data[2]), None)  # undeclared length: read to the end
    done = Upload.of(await one.get_session(final.id))
    assert done.finished and done.offset_known and done.session.received == 3701
    assert await content(one, final.session.key) == b"".join(data)
    assert [await one.list_resources(PENDING_FINAL, parent=p.id) for p in parts] == [[], [], []]


@pytest.mark.anyio
async def test_final_whose_part_was_terminated_never_finishes(engine: Engine) -> None:
    uploads = TusUploads(engine)
    a, b = [await uploads.create(ALICE, NewUpload(1, Concat.PARTIAL)) for _ in range(2)]
    final = await uploads.create(ALICE, NewUpload(None, Concat.FINAL, (a.id, b.id)))
    await uploads.terminate(b.id, ALICE)
    await uploads.append(a.id, ALICE, 0, body(b"a"), 1)  # completing a part drops links to nothing
    assert not (await uploads.get(final.id, ALICE)).finished
    with pytest.raises(TusFault) as info:
        await uploads.download(final.id, ALICE)
    assert info.value.code is FaultCode.NOT_FINISHED
    await uploads.terminate(final.id, ALICE)
    with pytest.raises(SessionGone):
        await uploads.get(final.id, ALICE)


@pytest.mark.anyio
async def test_times_come_from_the_engine_clock(engine: Engine, clock: FakeClock) -> None:
    uploads = TusUploads(engine, expiration=50.0)
    part = await uploads.create(ALICE, NewUpload(3, Concat.PARTIAL))
    assert part.session.expires_at == clock.now + 50.0
    await uploads.append(part.id, ALICE, 0, body(b"abc"), 3)
    clock.now += 20.0
    final = await uploads.create(ALICE, NewUpload(None, Concat.FINAL, (part.id,)))
    assert final.finished
    assert final.session.modified_at == clock.now and final.session.expires_at == clock.now + 50.0


@pytest.mark.anyio
async def test_a_read_right_after_a_commit_died_finishes_it(engine: Engine,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The last PATCH recorded its bytes (the upload is COMMITTING) and its request died before publishing.
    A HEAD moments later -- well inside the engine's grace for commits in progress -- finishes the commit
    rather than reporting a complete upload that GET then refuses."""
    from chunkd.core import faults

    uploads = TusUploads(engine)
    upload = await uploads.create(ALICE, NewUpload(5))
    monkeypatch.setattr(faults, "_POINTS", {"after-record": "raise"})
    with pytest.raises(faults.FaultInjected):
        await uploads.append(upload.id, ALICE, 0, body(b"hello"), 5)
    monkeypatch.setattr(faults, "_POINTS", {})
    assert (await engine.get_session(upload.id)).state is SessionState.COMMITTING
    seen = await uploads.get(upload.id, ALICE)
    assert seen.finished and seen.session.state is SessionState.COMMITTED
    _, info = await uploads.download(upload.id, ALICE)
    assert info.size == 5 and await content(engine, upload.session.key) == b"hello"
