"""Universal Print as services in-process over real SQLite and local files: the records as they are
stored, job and document state rules, a document finished when its upload completes (also after a crash
between the last byte and the mark), deadlines on the engine's clock, and another principal kept out."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chunkd.core import errors
from chunkd.core.body import Body
from chunkd.core.engine import Engine
from chunkd.core.models import SessionState
from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.services.envelope import Stored
from chunkd.services.print_documents import PrintDocuments
from chunkd.services.print_jobs import PrintJobs
from chunkd.services.print_records import (
    KIND_DOCUMENT,
    NAMESPACE,
    Document,
    Job,
    Printer,
    PrintFault,
    PrintFaultCode,
    UploadFields,
)
from chunkd.services.printers import Printers
from tests.services.conftest import FakeClock

pytestmark = pytest.mark.anyio
ALICE = Principal(kind="user", tenant="t1", user="alice")
BOB = Principal(kind="user", tenant="t1", user="bob")
EVE = Principal(kind="user", tenant="t2", user="eve")
PDF = "application/pdf"


async def body(data: bytes) -> Body:
    yield data


@dataclass
class Print:
    engine: Engine
    printers: Printers
    documents: PrintDocuments
    jobs: PrintJobs

    async def job(self, who: Principal = ALICE) -> tuple[Printer, Job, Document]:
        printer = await self.printers.register(ALICE, "Office")
        job, docs = await self.jobs.create(who, printer.id, {"copies": 2})
        return printer, job, docs[0]


@pytest.fixture
def p(engine: Engine) -> Print:
    printers = Printers(engine)
    documents = PrintDocuments(engine, missing_limit=10)
    return Print(engine, printers, documents, PrintJobs(engine, printers, documents))


def fault(info: pytest.ExceptionInfo[PrintFault]) -> PrintFaultCode:
    return info.value.code


def test_records_read_the_stored_format() -> None:
    """Data stored by earlier versions keeps working: these are the documents they hold."""
    stored = Stored(tenant="t1", creator="user:t1:alice", created_at=5.0, modified_at=6.0, version=3)
    doc = Resource(kind=KIND_DOCUMENT, id="d", tenant="t1", owner="o", parent="j", created_at=1.0, modified_at=2.0,
                   data={"displayName": "a.pdf", "contentType": PDF, "size": 7, "uploaded": True, "sessionId": "s",
                         "uploadedAt": 9.5, "objectKey": "t1/d"})
    d = Document.from_resource(doc)
    assert (d.job_id, d.size, d.uploaded, d.session_id, d.uploaded_at, d.object_key) == ("j", 7, True, "s", 9.5, "t1/d")
    assert d.to_resource().data == doc.data
    stub = Document(id="d", job_id="j")
    assert stub.to_resource().data == {"displayName": "", "contentType": "", "size": 0, "uploaded": False,
                                       "sessionId": None}
    job = Job(id="j", printer_id="p", configuration={"copies": 1}, created_by={"user": "alice"}, stored=stored)
    assert Job.from_resource(job.to_resource()) == job
    assert job.to_resource().parent == "p" and job.owner == "user:t1:alice"
    printer = Printer(id="p", display_name="Office", content_types=(PDF,), stored=stored)
    assert Printer.from_resource(printer.to_resource()) == printer
    extra = {"deadline": 12.5, "document": "d", "job": "j", "printer": "p",
             "principal": {"kind": "user", "tenant": "t1", "user": "alice", "app": ""}}
    fields = UploadFields.from_extra(extra)
    assert fields.to_extra() == extra and fields.owner.key == ALICE.key


async def test_printers_of_another_tenant_do_not_exist(p: Print) -> None:
    printer = await p.printers.register(ALICE, "Office", [" Application/PDF ", ""])
    assert printer.content_types == (PDF,) and printer.tenant == "t1"
    assert [x.id for x in await p.printers.visible_to(BOB)] == [printer.id]
    assert await p.printers.visible_to(EVE) == []
    with pytest.raises(PrintFault) as info:
        await p.printers.get(EVE, printer.id)
    assert fault(info) is PrintFaultCode.NOT_FOUND
    with pytest.raises(PrintFault):
        await p.jobs.create(EVE, printer.id, None)


async def test_a_document_is_finished_when_its_upload_completes(p: Print, clock: FakeClock) -> None:
    _, job, doc = await p.job()
    session = await p.documents.open_session(ALICE, job, doc.id, 10, PDF, "a.pdf")
    assert UploadFields.from_extra(session.extra).deadline == clock.now + p.engine.config.session_ttl
    # the same principal asking again with the same properties gets the same session
    assert (await p.documents.open_session(ALICE, job, doc.id, 10, PDF, "a.pdf")).id == session.id
    first = await p.documents.write(session.id, ALICE, 0, 4, body(b"0123"))
    assert first.document is None and first.session.state is SessionState.OPEN
    assert await p.documents.missing(first.session) == [(4, 10)]
    assert not (await p.documents.get(job, doc.id)).uploaded
    last = await p.documents.write(session.id, None, 4, 10, body(b"456789"), report_missing=True)
    assert last.document is not None and last.document.uploaded
    got = await p.documents.get(job, doc.id)
    assert (got.size, got.content_type, got.display_name, got.object_key) == (10, PDF, "a.pdf", f"t1/{doc.id}")
    uploaded, info = await p.documents.uploaded(job, doc.id)
    assert uploaded == got
    data = b"".join([c async for c in p.engine.read_object(NAMESPACE, info.key, 0, info.size)])
    assert data == b"0123456789"
    # a finished document takes no new session and cannot have its session cancelled
    with pytest.raises(PrintFault) as refused:
        await p.documents.open_session(ALICE, job, doc.id, 10, PDF, "a.pdf")
    assert fault(refused) is PrintFaultCode.DOCUMENT_UPLOADED
    with pytest.raises(PrintFault) as ended:
        await p.documents.cancel(await p.documents.session(session.id))
    assert fault(ended) is PrintFaultCode.SESSION_ENDED


async def test_a_completion_that_was_not_recorded_is_finished_on_the_next_look(p: Print) -> None:
    """A crash between the last byte and the document's mark: reading the document finishes it."""
    _, job, doc = await p.job()
    session = await p.documents.open_session(ALICE, job, doc.id, 3, PDF, "a.pdf")
    await p.engine.write_range(session.id, ALICE, 0, 3, body(b"abc"))  # the engine alone: nothing marks the doc
    res = await p.engine.get_resource(KIND_DOCUMENT, doc.id)
    assert res is not None and not res.data["uploaded"]
    assert (await p.documents.get(job, doc.id)).uploaded
    assert all(d.uploaded for d in await p.documents.of_job(job))


async def test_job_starts_only_when_every_document_is_uploaded_and_then_takes_no_upload(p: Print) -> None:
    printer, job, doc = await p.job()
    with pytest.raises(PrintFault) as early:
        await p.jobs.start(ALICE, printer.id, job.id, tenant_wide=False)
    assert fault(early) is PrintFaultCode.INCOMPLETE
    session = await p.documents.open_session(ALICE, job, doc.id, 2, PDF, "")
    await p.documents.write(session.id, ALICE, 0, 2, body(b"hi"))
    started = await p.jobs.start(ALICE, printer.id, job.id, tenant_wide=False)
    assert started.started and (await p.jobs.start(ALICE, printer.id, job.id, tenant_wide=False)) == started
    with pytest.raises(PrintFault) as late:
        await p.documents.open_session(ALICE, started, doc.id, 2, PDF, "")
    assert fault(late) is PrintFaultCode.JOB_STARTED


async def test_an_empty_document_is_uploaded_when_its_session_opens(p: Print) -> None:
    _, job, doc = await p.job()
    session = await p.documents.open_session(ALICE, job, doc.id, 0, PDF, "empty.pdf")
    assert session.state is SessionState.COMMITTED
    assert (await p.documents.get(job, doc.id)).uploaded


async def test_another_principal_cannot_see_or_touch_a_job(p: Print) -> None:
    printer, job, doc = await p.job(ALICE)
    with pytest.raises(PrintFault) as denied:
        await p.jobs.get(BOB, printer.id, job.id, tenant_wide=False)
    assert fault(denied) is PrintFaultCode.NOT_OWNER
    with pytest.raises(PrintFault) as denied:
        await p.jobs.start(BOB, printer.id, job.id, tenant_wide=False)
    assert fault(denied) is PrintFaultCode.NOT_OWNER
    assert await p.jobs.of_printer(BOB, printer.id, tenant_wide=False) == []
    # tenant-wide rights reach it; another tenant's principal never does
    assert (await p.jobs.get(BOB, printer.id, job.id, tenant_wide=True)).id == job.id
    assert [j.id for j in await p.jobs.of_printer(BOB, printer.id, tenant_wide=True)] == [job.id]
    with pytest.raises(PrintFault) as hidden:
        await p.jobs.get(EVE, printer.id, job.id, tenant_wide=True)
    assert fault(hidden) is PrintFaultCode.NOT_FOUND
    # Alice's session: Bob (with tenant-wide rights) may neither open his own, nor write, nor delete hers
    session = await p.documents.open_session(ALICE, job, doc.id, 4, PDF, "")
    with pytest.raises(PrintFault) as busy:
        await p.documents.open_session(BOB, job, doc.id, 4, PDF, "")
    assert fault(busy) is PrintFaultCode.SESSION_IN_PROGRESS
    with pytest.raises(PrintFault) as busy:
        await p.documents.held_session(job, doc.id, BOB, deleting=False)
    assert fault(busy) is PrintFaultCode.SESSION_IN_PROGRESS
    with pytest.raises(PrintFault) as owner:
        await p.documents.held_session(job, doc.id, BOB, deleting=True)
    assert fault(owner) is PrintFaultCode.NOT_OWNER
    with pytest.raises(errors.PermissionDenied):
        await p.documents.write(session.id, BOB, 0, 4, body(b"evil"))
    assert await p.documents.missing(await p.documents.session(session.id)) == [(0, 4)]


async def test_other_properties_need_the_session_deleted_first(p: Print) -> None:
    _, job, doc = await p.job()
    session = await p.documents.open_session(ALICE, job, doc.id, 4, PDF, "a.pdf")
    with pytest.raises(PrintFault) as other:
        await p.documents.open_session(ALICE, job, doc.id, 5, PDF, "a.pdf")
    assert fault(other) is PrintFaultCode.SESSION_IN_PROGRESS
    await p.documents.cancel(await p.documents.held_session(job, doc.id, ALICE, deleting=True))
    assert (await p.documents.get(job, doc.id)).session_id is None
    with pytest.raises(PrintFault) as gone:
        await p.documents.live_session(session.id)
    assert fault(gone) is PrintFaultCode.SESSION_NOT_FOUND
    assert (await p.documents.open_session(ALICE, job, doc.id, 5, PDF, "a.pdf")).id != session.id


async def test_a_session_past_its_deadline_on_the_engine_clock_has_ended(p: Print, clock: FakeClock) -> None:
    _, job, doc = await p.job()
    session = await p.documents.open_session(ALICE, job, doc.id, 4, PDF, "")
    clock.now += p.engine.config.session_ttl + 1
    with pytest.raises(PrintFault) as expired:
        await p.documents.write(session.id, None, 0, 4, body(b"late"))
    assert fault(expired) is PrintFaultCode.SESSION_NOT_FOUND
    with pytest.raises(PrintFault) as expired:
        await p.documents.session_of(job, doc.id)
    assert fault(expired) is PrintFaultCode.SESSION_NOT_FOUND
    # the expired session was deleted on the way, so a new one can be opened at once
    assert (await p.documents.open_session(ALICE, job, doc.id, 4, PDF, "")).id != session.id


async def test_a_document_of_another_job_is_not_found(p: Print) -> None:
    _, job, _ = await p.job()
    _, _, other = await p.job()
    with pytest.raises(PrintFault) as info:
        await p.documents.get(job, other.id)
    assert fault(info) is PrintFaultCode.NOT_FOUND
    with pytest.raises(PrintFault) as info:
        await p.documents.uploaded(job, (await p.documents.of_job(job))[0].id)
    assert fault(info) is PrintFaultCode.NOT_FOUND
