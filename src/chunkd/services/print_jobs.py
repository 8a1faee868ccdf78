"""Print jobs: creating one with its document stub, finding a caller's jobs, and starting a job once every
document is uploaded.

Who reaches a job: it must exist for the caller (:func:`~chunkd.services.printers.visible`), and without
tenant-wide rights (``tenant_wide``: the front end's permission check decides) only the caller's own jobs
are reached. Methods raise :class:`PrintFault` for what the caller asked wrongly and core Conflict when
they lost too many races; none carries an HTTP status.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import anyio

from chunkd.core import errors
from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.services.print_documents import RETRIES, PrintDocuments
from chunkd.services.print_records import (
    KIND_DOCUMENT,
    KIND_JOB,
    Document,
    Job,
    Printer,
    PrintFault,
    PrintFaultCode,
    principal_data,
)
from chunkd.services.printers import Printers, visible


def acting(principal: Principal, printer: Printer) -> Principal:
    """The caller; with --no-auth (anonymous) it acts inside the printer's tenant so its objects get one."""
    if principal.kind == "anonymous":
        return dataclasses.replace(principal, tenant=printer.tenant)
    return principal


class PrintJobs:
    """Jobs of the printers, with their documents (:class:`PrintDocuments`)."""

    def __init__(self, engine: Engine, printers: Printers, documents: PrintDocuments) -> None:
        self.engine = engine
        self.printers = printers
        self.documents = documents

    async def create(self, principal: Principal, printer_id: str,
                     configuration: Mapping[str, Any] | None) -> tuple[Job, list[Document]]:
        """A new job of the printer with one empty document stub. The document is stored first, so a job is
        never seen without its stub. PrintFault NOT_FOUND when the printer does not exist for the caller."""
        printer = await self.printers.get(principal, printer_id)
        actor = acting(principal, printer)
        job = Job(id=str(uuid.uuid4()), printer_id=printer.id, configuration=dict(configuration or {}),
                  created_by=principal_data(actor))
        stub = Document(id=str(uuid.uuid4()), job_id=job.id).to_resource()
        doc = await self.engine.create_resource(KIND_DOCUMENT, stub.id, actor, stub.data, parent=job.id)
        res = job.to_resource()
        stored = await self.engine.create_resource(KIND_JOB, res.id, actor, res.data, parent=printer.id)
        return Job.from_resource(stored), [Document.from_resource(doc)]

    async def get(self, principal: Principal, printer_id: str, job_id: str, *, tenant_wide: bool) -> Job:
        """The printer's job. PrintFault NOT_FOUND when printer or job does not exist for the caller,
        NOT_OWNER for another principal's job unless ``tenant_wide``."""
        printer = await self.printers.get(principal, printer_id)
        res = await self.engine.get_resource(KIND_JOB, job_id)
        if res is None or res.parent != printer.id or not visible(principal, res.tenant):
            raise PrintFault(PrintFaultCode.NOT_FOUND, f"print job {job_id} was not found")
        if not tenant_wide and res.owner != principal.key:
            raise PrintFault(PrintFaultCode.NOT_OWNER, "without PrintJob.Read.All or PrintJob.ReadWrite.All only "
                                                       "your own print jobs can be reached")
        return Job.from_resource(res)

    async def of_printer(self, principal: Principal, printer_id: str, *, tenant_wide: bool) -> list[Job]:
        """The printer's jobs the caller reaches: all of them if ``tenant_wide``, else the caller's own."""
        printer = await self.printers.get(principal, printer_id)
        owner = None if tenant_wide else principal.key
        found = await self.engine.list_resources(KIND_JOB, parent=printer.id, owner=owner)
        return [Job.from_resource(r) for r in found if visible(principal, r.tenant)]

    async def start(self, principal: Principal, printer_id: str, job_id: str, *, tenant_wide: bool) -> Job:
        """Start the job (idempotent: a started job is returned as it is). PrintFault INCOMPLETE while a
        document is not uploaded; lookups as :meth:`get`."""
        job = await self.get(principal, printer_id, job_id, tenant_wide=tenant_wide)
        for _ in range(RETRIES):
            if job.started:
                return job
            docs = await self.documents.of_job(job)
            if not docs or not all(d.uploaded for d in docs):
                raise PrintFault(PrintFaultCode.INCOMPLETE,
                                 "every document of the job must be uploaded before it starts")
            try:
                started = replace(job, started=True).to_resource()
                res = await self.engine.update_resource(job.to_resource(), started.data)
                return Job.from_resource(res)
            except errors.Conflict:
                await anyio.sleep(0.01)
                job = await self.get(principal, printer_id, job_id, tenant_wide=tenant_wide)
        return job
