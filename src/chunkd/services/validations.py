"""Industry Data's ``validate`` and the operations it records (``fileValidateOperation``).

Validating seals the connector's open upload container (from then on its SAS cannot write; see
:meth:`ContainerService.seal`), runs the rules of :mod:`chunkd.services.validation_rules` over the sealed
set and records an :class:`Operation`, all before it returns: the operation is ``succeeded`` as soon as a
client can know its id. An operation is a tenant-scoped engine resource, child of its connector.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.services.blob_model import BlobFault
from chunkd.services.blobs import BlobServices
from chunkd.services.connectors import ConnectorFault, ConnectorFaultCode, ConnectorService
from chunkd.services.envelope import Stored
from chunkd.services.validation_rules import DEFAULT_RULES, ERROR, WARNING, Problem, Rule, ValidationContext, run_rules

K_OPERATION = "idoperation"
RUNNING, SUCCEEDED = "running", "succeeded"


def _problems(items: Any, severity: str) -> tuple[Problem, ...]:
    return tuple(Problem(severity, str(p.get("code", "")), str(p.get("message", "")), str(p.get("target", "")))
                 for p in items or () if isinstance(p, dict))


def _stored(problems: Sequence[Problem]) -> list[dict[str, str]]:
    return [{"code": p.code, "message": p.message, "target": p.target} for p in problems]


@dataclass(frozen=True)
class Operation:
    """A validate run: its status, when it started and last changed, the problems found (errors and
    warnings) and the names of the files that passed."""

    id: str
    connector_id: str
    container_id: str
    status: str
    created: float
    last_action: float
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    validated_files: tuple[str, ...] = ()
    stored: Stored = field(default_factory=Stored)

    @classmethod
    def from_resource(cls, res: Resource) -> Operation:
        d = res.data
        return cls(id=res.id, connector_id=str(d["connectorId"]), container_id=str(d.get("containerId", "")),
                   status=str(d["status"]), created=float(d["created"]), last_action=float(d["lastAction"]),
                   errors=_problems(d.get("errors"), ERROR), warnings=_problems(d.get("warnings"), WARNING),
                   validated_files=tuple(str(n) for n in d.get("validatedFiles", [])), stored=Stored.of(res))

    def to_resource(self) -> Resource:
        data = {"status": self.status, "created": self.created, "lastAction": self.last_action,
                "connectorId": self.connector_id, "containerId": self.container_id,
                "errors": _stored(self.errors), "warnings": _stored(self.warnings),
                "validatedFiles": list(self.validated_files)}
        return self.stored.resource(K_OPERATION, self.id, data, parent=self.connector_id)


class ValidationService:
    """validate over the connectors of ``connectors`` and the blob family ``blob``, with ``rules``."""

    def __init__(self, engine: Engine, connectors: ConnectorService, blob: BlobServices,
                 rules: Sequence[Rule] = DEFAULT_RULES) -> None:
        self.engine = engine
        self.connectors = connectors
        self.blob = blob
        self.rules = tuple(rules)

    async def validate(self, principal: Principal, connector_id: str) -> Operation:
        """Seal the connector's open upload container, run the rules and record the operation (returned
        ``succeeded``). ConnectorFault NOT_FOUND for an unknown connector, NO_SESSION when it has no open
        upload session. A validation that found problems still succeeds; they are in the operation."""
        connector = await self.connectors.get(principal.tenant, connector_id)
        container = await self.connectors.open_container(connector)
        if container is None:
            raise _no_session()
        now = self.engine.clock()
        op = Operation(id=str(uuid.uuid4()), connector_id=connector.id, container_id=container.id, status=RUNNING,
                       created=now, last_action=now)
        res = op.to_resource()
        op = Operation.from_resource(await self.engine.create_resource(K_OPERATION, op.id, principal, res.data,
                                                                       parent=connector.id))
        try:
            blobs = await self.blob.containers.seal(container.id)  # from here on the session's SAS cannot write
        except BlobFault as exc:  # discarded meanwhile (a reset, or the connector's deletion)
            await self.engine.delete_resource(K_OPERATION, op.id)
            raise _no_session() from exc
        ctx = ValidationContext(connector=connector, container_id=container.id, blobs=blobs,
                                uncommitted=await self.blob.blocks.uncommitted_names(container.id),
                                read=lambda b: self.blob.blobs.read(b, 0, b.size))
        problems = await run_rules(ctx, self.rules)
        bad = {p.target for p in problems if p.severity == ERROR or p.code == "UnexpectedFile"}
        done = replace(op, status=SUCCEEDED, last_action=self.engine.clock(),
                       errors=tuple(p for p in problems if p.severity == ERROR),
                       warnings=tuple(p for p in problems if p.severity == WARNING),
                       validated_files=tuple(b.name for b in blobs if b.name not in bad))
        return Operation.from_resource(await self.engine.update_resource(op.to_resource(), done.to_resource().data))

    async def get(self, tenant: str, operation_id: str) -> Operation:
        """The operation; ConnectorFault NOT_FOUND when it does not exist in ``tenant``."""
        res = await self.engine.get_resource(K_OPERATION, operation_id)
        if res is None or res.tenant != tenant:
            raise ConnectorFault(ConnectorFaultCode.NOT_FOUND, f"operation {operation_id} does not exist")
        return Operation.from_resource(res)


def _no_session() -> ConnectorFault:
    return ConnectorFault(ConnectorFaultCode.NO_SESSION, "the data connector has no open upload session; call "
                          "getUploadSession first")
