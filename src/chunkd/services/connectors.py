"""Industry Data data connectors (``azureDataLakeConnector``) and their upload sessions.

A connector is a tenant-scoped engine resource (:class:`Connector`; document ``displayName``, optional
``fileFormat``, ``sourceSystem`` and ``containerId``). It has at most one current upload session, which is
one blob container (:mod:`chunkd.services.blob_containers`): :meth:`ConnectorService.upload_session` keeps
the current one while it is open and unexpired, or switches the connector to a fresh container. Every
method raises :class:`ConnectorFault` for what the caller asked wrongly and core Conflict when it lost too
many races; none carries an HTTP status.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from chunkd.core import errors
from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.services.blob_containers import ContainerService
from chunkd.services.blob_model import Container
from chunkd.services.envelope import Stored

K_CONNECTOR = "idconnector"
MAX_DISPLAY_NAME = 100
DISPLAY_NAME_RULE = f"displayName is required: a non-empty string of at most {MAX_DISPLAY_NAME} characters"


class ConnectorFaultCode(StrEnum):
    NOT_FOUND = "notFound"  # no such connector (or operation) in the caller's tenant
    INVALID = "invalid"  # a property value the connector cannot take
    NO_SESSION = "noSession"  # validate without an open upload session


class ConnectorFault(Exception):
    """A refusal by the connector services: a code and a message for the client."""

    def __init__(self, code: ConnectorFaultCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Connector:
    """A data connector. ``file_format`` is the ``fileFormatReferenceValue`` the client gave (its ``code``
    picks the validation rules); ``container_id`` is the current upload session's container, "" before the
    first getUploadSession."""

    id: str
    display_name: str
    file_format: Mapping[str, Any] | None = None
    source_system: str | None = None
    container_id: str = ""
    stored: Stored = field(default_factory=Stored)

    @property
    def tenant(self) -> str:
        return self.stored.tenant

    @classmethod
    def from_resource(cls, res: Resource) -> Connector:
        d = res.data
        ff = d.get("fileFormat")
        source = d.get("sourceSystem")
        return cls(id=res.id, display_name=str(d["displayName"]),
                   file_format=dict(ff) if isinstance(ff, dict) else None,
                   source_system=str(source) if source is not None else None,
                   container_id=str(d.get("containerId") or ""), stored=Stored.of(res))

    def to_resource(self) -> Resource:
        data: dict[str, Any] = {"displayName": self.display_name}
        if self.file_format is not None:
            data["fileFormat"] = dict(self.file_format)
        if self.source_system is not None:
            data["sourceSystem"] = self.source_system
        if self.container_id:
            data["containerId"] = self.container_id
        return self.stored.resource(K_CONNECTOR, self.id, data)


@dataclass(frozen=True)
class ConnectorFields:
    """Settable properties of a connector; None leaves a property as it is (on create: unset)."""

    display_name: str | None = None
    file_format: Mapping[str, Any] | None = None
    source_system: str | None = None

    def check(self, *, create: bool) -> None:
        """ConnectorFault INVALID unless the values are acceptable (a display name is required on create)."""
        name = self.display_name
        if (create or name is not None) and (name is None or not name.strip() or len(name) > MAX_DISPLAY_NAME):
            raise ConnectorFault(ConnectorFaultCode.INVALID, DISPLAY_NAME_RULE)

    def apply(self, connector: Connector) -> Connector:
        return replace(connector,
                       display_name=self.display_name if self.display_name is not None else connector.display_name,
                       file_format=self.file_format if self.file_format is not None else connector.file_format,
                       source_system=self.source_system if self.source_system is not None
                       else connector.source_system)


class ConnectorService:
    """Connectors and their upload sessions. Upload containers are writable for ``session_ttl`` seconds and
    kept (validated files stay readable) for ``container_ttl``."""

    def __init__(self, engine: Engine, containers: ContainerService, session_ttl: float,
                 container_ttl: float) -> None:
        self.engine = engine
        self.containers = containers
        self.session_ttl = session_ttl
        self.container_ttl = container_ttl

    async def create(self, principal: Principal, fields: ConnectorFields) -> Connector:
        """A new connector in the caller's tenant. ConnectorFault INVALID for bad fields."""
        fields.check(create=True)
        res = fields.apply(Connector(id=str(uuid.uuid4()), display_name=fields.display_name or "")).to_resource()
        return Connector.from_resource(await self.engine.create_resource(K_CONNECTOR, res.id, principal, res.data))

    async def of_tenant(self, tenant: str) -> list[Connector]:
        return [Connector.from_resource(r) for r in await self.engine.list_resources(K_CONNECTOR, tenant=tenant)]

    async def get(self, tenant: str, connector_id: str) -> Connector:
        """The connector; ConnectorFault NOT_FOUND when it does not exist in ``tenant``."""
        res = await self.engine.get_resource(K_CONNECTOR, connector_id)
        if res is None or res.tenant != tenant:
            raise ConnectorFault(ConnectorFaultCode.NOT_FOUND, f"data connector {connector_id} does not exist")
        return Connector.from_resource(res)

    async def _replace(self, current: Connector, changed: Connector) -> Connector:
        """Compare-and-set (Conflict when it moved, NotFound when it is gone)."""
        res = await self.engine.update_resource(current.to_resource(), changed.to_resource().data)
        return Connector.from_resource(res)

    async def update(self, tenant: str, connector_id: str, fields: ConnectorFields) -> Connector:
        """PATCH: set the given fields (retrying on races)."""
        fields.check(create=False)
        for _ in range(20):
            current = await self.get(tenant, connector_id)
            try:
                return await self._replace(current, fields.apply(current))
            except errors.Conflict:
                continue
        raise errors.Conflict("the connector is changing too fast")

    async def delete(self, tenant: str, connector_id: str) -> None:
        """Delete the connector and all its upload containers (with their files)."""
        connector = await self.get(tenant, connector_id)
        await self.engine.delete_resource(K_CONNECTOR, connector.id)
        for container in await self.containers.of_owner(connector.id):
            await self.containers.discard(container.id)

    async def open_container(self, connector: Connector) -> Container | None:
        """The connector's current container while it is open (not validated, discarded or expired)."""
        current = await self.containers.get(connector.container_id) if connector.container_id else None
        return current if current is not None and current.is_open else None

    async def upload_session(self, principal: Principal, connector_id: str, reset: bool) -> Container:
        """getUploadSession: the current container while it is open and its session unexpired, unless
        ``reset``; otherwise a new empty one becomes current and an open old one is discarded (its SAS then
        meets ContainerNotFound). Expired containers of the connector are discarded first. Safe to race:
        the switch is a compare-and-set, and a loser discards the container it made."""
        await self.containers.sweep_owner((await self.get(principal.tenant, connector_id)).id)
        for _ in range(20):
            connector = await self.get(principal.tenant, connector_id)
            current = await self.open_container(connector)
            if current is not None and not reset and current.session_expires > self.engine.clock():
                return current
            fresh = await self.containers.create(principal, connector.id, self.session_ttl, self.container_ttl)
            try:
                await self._replace(connector, replace(connector, container_id=fresh.id))
            except (errors.Conflict, errors.NotFound):
                await self.containers.discard(fresh.id)  # another request switched the connector first
                continue
            if current is not None:
                await self.containers.discard(current.id)  # reset (or a session that ended unvalidated)
            return fresh
        raise errors.Conflict("the connector's upload session is changing too fast")
