"""Universal Print printers: the resource kinds of printers, jobs and documents, and registering a
printer (used by the Graph print front end and by ``chunkd printers add``)."""

from __future__ import annotations

import uuid

from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.core.resources import Resource

KIND_PRINTER = "print.printer"
KIND_JOB = "print.job"
KIND_DOCUMENT = "print.document"
DEFAULT_CONTENT_TYPES = ("application/oxps", "application/pdf", "image/jpeg", "image/png", "image/pwg-raster",
                         "image/urf", "text/plain")


async def register_printer(engine: Engine, principal: Principal, display_name: str,
                           content_types: list[str] | None = None) -> Resource:
    """Register a printer in ``principal.tenant``; ``content_types`` default to PDF, OXPS, JPEG, PNG, ..."""
    types = [t.strip().lower() for t in (content_types or DEFAULT_CONTENT_TYPES) if t.strip()]
    data = {"displayName": display_name, "contentTypes": types}
    return await engine.create_resource(KIND_PRINTER, str(uuid.uuid4()), principal, data)


async def list_printers(engine: Engine, tenant: str | None = None) -> list[Resource]:
    return await engine.list_resources(KIND_PRINTER, tenant=tenant)
