"""Universal Print printers: registering them (the Graph front end's admin route and ``chunkd printers
add``), listing them and finding one for a caller. Another tenant's printers, jobs and documents do not
exist for a caller (:func:`visible`); the anonymous principal of ``--no-auth`` sees every tenant."""

from __future__ import annotations

import uuid

from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.services.print_records import (
    DEFAULT_CONTENT_TYPES,
    KIND_DOCUMENT,
    KIND_JOB,
    KIND_PRINTER,
    Printer,
    PrintFault,
    PrintFaultCode,
)

__all__ = ["DEFAULT_CONTENT_TYPES", "KIND_DOCUMENT", "KIND_JOB", "KIND_PRINTER", "Printers", "visible"]


def visible(principal: Principal, tenant: str) -> bool:
    """Whether ``principal`` may see an object of ``tenant``."""
    return principal.kind == "anonymous" or tenant == principal.tenant


class Printers:
    """The printers of the engine's resource store. Every method reads or writes one resource; nothing is
    cached, so several processes on one store agree."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def register(self, principal: Principal, display_name: str,
                       content_types: list[str] | None = None) -> Printer:
        """A new printer in ``principal.tenant``; ``content_types`` default to PDF, OXPS, JPEG, PNG, ...
        (lower-cased, blanks dropped). Durable when it returns."""
        types = tuple(t.strip().lower() for t in (content_types or DEFAULT_CONTENT_TYPES) if t.strip())
        res = Printer(id=str(uuid.uuid4()), display_name=display_name, content_types=types).to_resource()
        return Printer.from_resource(await self.engine.create_resource(KIND_PRINTER, res.id, principal, res.data))

    async def of_tenant(self, tenant: str | None) -> list[Printer]:
        """Every printer of ``tenant`` (None: of every tenant)."""
        return [Printer.from_resource(r) for r in await self.engine.list_resources(KIND_PRINTER, tenant=tenant)]

    async def visible_to(self, principal: Principal) -> list[Printer]:
        return await self.of_tenant(None if principal.kind == "anonymous" else principal.tenant)

    async def get(self, principal: Principal, printer_id: str) -> Printer:
        """The printer; PrintFault NOT_FOUND when it does not exist for ``principal``."""
        res = await self.engine.get_resource(KIND_PRINTER, printer_id)
        if res is None or not visible(principal, res.tenant):
            raise PrintFault(PrintFaultCode.NOT_FOUND, f"printer {printer_id} was not found")
        return Printer.from_resource(res)
