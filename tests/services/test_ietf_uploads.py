"""The IETF draft's service in-process over real SQLite and local files: completion only by the client's
word, lengths that must agree, refusals that record nothing, and the tus events of the same sessions."""

from __future__ import annotations

import pytest

from chunkd.core.checksum import verified
from chunkd.core.engine import Engine
from chunkd.core.errors import ChecksumMismatch, OffsetMismatch
from chunkd.core.events import Event
from chunkd.core.models import SessionState
from chunkd.services.ietf_uploads import DraftCode, DraftFault, DraftUploads, Limits
from chunkd.services.tus_records import NAMESPACE
from chunkd.services.tus_uploads import TusUploads
from tests.core import test_engine as base
from tests.core.test_engine import ALICE, body

clock, engines, engine = base.clock, base.engines, base.engine  # their fixtures
DATA = bytes(range(256)) * 40  # 10 KiB


def service(engine: Engine, **limits: int) -> DraftUploads:
    return DraftUploads(TusUploads(engine, max_size=1 << 20), Limits(1 << 20, 3600.0, **limits))


async def content(engine: Engine, key: str) -> bytes:
    return b"".join([p async for p in engine.read_object(NAMESPACE, key, 0, 1 << 40)])


@pytest.mark.anyio
async def test_an_upload_completes_only_when_the_client_says_so(engine: Engine) -> None:
    events: list[str] = []

    async def record(event: Event) -> None:
        events.append(event.kind)

    engine.events.subscribe(record)
    drafts = service(engine)
    seen = []

    async def created(upload: object) -> None:
        seen.append(upload)

    upload = await drafts.create(ALICE, complete=False, length=len(DATA), count=4000, body=body(DATA[:4000]),
                                 created=created)
    assert len(seen) == 1 and (upload.offset, upload.complete, upload.length) == (4000, False, len(DATA))
    assert upload.upload.session.length is None  # announced, not set: reaching it must not complete the upload
    upload = await drafts.append(upload.id, ALICE, offset=4000, complete=False, length=None, count=len(DATA) - 4000,
                                 body=body(DATA[4000:]))
    assert (upload.offset, upload.complete) == (len(DATA), False)
    assert "committed" not in events
    upload = await drafts.append(upload.id, ALICE, offset=len(DATA), complete=True, length=None, count=0,
                                 body=body(b""))
    assert upload.complete and upload.upload.session.state is SessionState.COMMITTED
    assert await content(engine, upload.upload.session.key) == DATA
    assert events.count("created") == 1 and events.count("committed") == 1


@pytest.mark.anyio
async def test_refused_appends_change_nothing(engine: Engine) -> None:
    drafts = service(engine, min_append_size=100)
    upload = await drafts.create(ALICE, complete=False, length=len(DATA), count=1000, body=body(DATA[:1000]))
    refusals: list[tuple[int, bool, int | None, int, type[Exception]]] = [
        (500, False, None, 1000, OffsetMismatch),
        (1000, True, None, 1000, DraftFault),  # completes with 2000 bytes, not 10 KiB
        (1000, False, 999, 1000, DraftFault),  # another Upload-Length
        (1000, False, None, 50, DraftFault),  # below min-append-size
        (1000, False, None, len(DATA), DraftFault),  # beyond the length
    ]
    for offset, complete, length, count, error in refusals:
        with pytest.raises(error):
            await drafts.append(upload.id, ALICE, offset=offset, complete=complete, length=length, count=count,
                                body=body(DATA[1000:1000 + count]))
        assert (await drafts.get(upload.id, ALICE)).offset == 1000
    wrong = verified(body(DATA[1000:2000]), "sha256", b"\0" * 32)
    with pytest.raises(ChecksumMismatch):
        await drafts.append(upload.id, ALICE, offset=1000, complete=False, length=None, count=1000, body=wrong)
    again = await drafts.get(upload.id, ALICE)
    assert (again.offset, again.complete, again.length) == (1000, False, len(DATA))


@pytest.mark.anyio
async def test_max_append_size(engine: Engine) -> None:
    drafts = service(engine, max_append_size=5000)
    upload = await drafts.create(ALICE, complete=False, length=None, count=0, body=None)
    with pytest.raises(DraftFault) as info:
        await drafts.append(upload.id, ALICE, offset=0, complete=False, length=None, count=6000, body=body(DATA[:6000]))
    assert info.value.code is DraftCode.APPEND_TOO_LARGE
    upload = await drafts.append(upload.id, ALICE, offset=0, complete=True, length=None, count=5000,
                                 body=body(DATA[:5000]))
    assert upload.complete


@pytest.mark.anyio
async def test_a_completed_upload_takes_nothing_more(engine: Engine) -> None:
    drafts = service(engine)
    upload = await drafts.create(ALICE, complete=True, length=None, count=len(DATA), body=body(DATA))
    assert upload.complete
    with pytest.raises(DraftFault) as info:
        await drafts.append(upload.id, ALICE, offset=len(DATA), complete=True, length=None, count=1, body=body(b"x"))
    assert info.value.code is DraftCode.COMPLETED


@pytest.mark.anyio
async def test_a_length_announced_by_an_append_is_kept(engine: Engine) -> None:
    drafts = service(engine)
    upload = await drafts.create(ALICE, complete=False, length=None, count=100, body=body(DATA[:100]))
    upload = await drafts.append(upload.id, ALICE, offset=100, complete=False, length=300, count=100,
                                 body=body(DATA[100:200]))
    assert upload.length == 300
    with pytest.raises(DraftFault):
        await drafts.append(upload.id, ALICE, offset=200, complete=True, length=None, count=50,
                            body=body(DATA[200:250]))
    upload = await drafts.append(upload.id, ALICE, offset=200, complete=True, length=None, count=None,
                                 body=body(DATA[200:300]))  # chunked: its end gives the length
    assert upload.complete and await content(engine, upload.upload.session.key) == DATA[:300]
