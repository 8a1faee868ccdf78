"""Microsoft Graph Industry Data upload sessions (``/beta/external/industryData/...``) on the chunkd core.

Data connectors (``azureDataLakeConnector``) are tenant-scoped engine resources. ``getUploadSession`` binds a
connector to one blob container (:mod:`chunkd.protocols._blob_store`) and answers a ``fileUploadSession``
whose ``sessionUrl`` is a container SAS for chunkd's own blob endpoint (:mod:`chunkd.protocols.blob`), so
Azure Blob clients upload into it unchanged. ``validate`` finalises the container (its SAS can no longer
write), runs the pluggable rules of :mod:`chunkd.protocols.industry_validate` and records a
``fileValidateOperation``. Lifetimes and differences from the real service: docs/industry-data.md.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chunkd.auth import sas
from chunkd.auth.authenticator import Authenticator
from chunkd.auth.permissions import (
    INDUSTRYDATA_READ_ALL,
    INDUSTRYDATA_READBASIC_ALL,
    INDUSTRYDATA_READWRITE_ALL,
    INDUSTRYDATA_UPLOAD,
)
from chunkd.core import errors
from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.protocols._blob_store import K_CONTAINER, OPEN, BlobStore
from chunkd.protocols._graph import GraphError, authenticate, graph_call, json_object
from chunkd.protocols._http import first_query, iso_date
from chunkd.protocols._routing import ANY_PATH
from chunkd.protocols.industry_validate import DEFAULT_RULES, Rule, ValidationContext, run_rules

PREFIX = "/beta/external/industryData"
NS = "microsoft.graph.industryData"
CONNECTOR_TYPE = f"#{NS}.azureDataLakeConnector"
K_CONNECTOR, K_OPERATION = "idconnector", "idoperation"
SAS_PERMISSIONS = "racwdl"
_GET_UPLOAD_SESSION = f"{NS}.azuredatalakeconnector/getuploadsession".lower()
_VALIDATE = ("validate", f"{NS}.validate".lower())
_CALL = re.compile(r"([^()]*)(?:\(([^()]*)\))?")  # an OData function segment: name, then (params) at most once
_WRITABLE = {"displayName", "fileFormat", "sourceSystem@odata.bind", "fileFormat@odata.bind", "@odata.type"}

READ = (INDUSTRYDATA_READ_ALL, INDUSTRYDATA_READWRITE_ALL)
WRITE = (INDUSTRYDATA_READWRITE_ALL,)
UPLOAD = (INDUSTRYDATA_UPLOAD, INDUSTRYDATA_READWRITE_ALL)
OPERATIONS = (INDUSTRYDATA_READBASIC_ALL, INDUSTRYDATA_UPLOAD, INDUSTRYDATA_READ_ALL, INDUSTRYDATA_READWRITE_ALL)


@dataclass(frozen=True)
class IndustryDataConfig:
    """Lifetimes, seconds. The container outlives the session so validated files remain for the inbound flow."""

    session_ttl: float = 6 * 3600
    container_ttl: float = 48 * 3600
    account: str = "chunkd"


def _require(principal: Principal, allowed: Sequence[str], what: str) -> None:
    """Delegated tokens by scope, application tokens by role; unlike the shared Graph helper this accepts the
    application permission ``IndustryData-DataConnector.Upload``, which has no ``.All`` suffix."""
    if principal.unrestricted:
        return
    held = principal.scopes if principal.kind == "user" else principal.roles if principal.kind == "app" else set()
    if any(p in held for p in allowed):
        return
    raise GraphError(403, "accessDenied", f"{what} needs one of the permissions {', '.join(allowed)}")


def _iso(ts: float) -> str:
    return iso_date(ts, 7)


Handler = Callable[[Request, Principal], Awaitable[Response]]


class IndustryDataAPI:
    """Routes for data connectors, upload sessions, validate and operations."""

    def __init__(self, engine: Engine, authenticator: Authenticator, key: bytes,
                 config: IndustryDataConfig | None = None, rules: Sequence[Rule] = DEFAULT_RULES) -> None:
        self.engine = engine
        self.auth = authenticator
        self.key = key
        self.config = config or IndustryDataConfig()
        self.rules = tuple(rules)
        self.store = BlobStore(engine)

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route(f"{PREFIX}/dataConnectors", self._wrap(self.connectors), methods=["GET", "POST"]),
            Route(f"{PREFIX}/dataConnectors/{{cid}}", self._wrap(self.connector), methods=["GET", "PATCH", "DELETE"]),
            Route(f"{PREFIX}/dataConnectors/{{cid}}/{{action:{ANY_PATH}}}", self._wrap(self.action),
                  methods=["GET", "POST"]),
            Route(f"{PREFIX}/operations/{{oid}}", self._wrap(self.operation), methods=["GET"]),
        ]

    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            async def run() -> Response:
                return await handler(request, authenticate(self.auth, request))

            return await graph_call(request, run)

        return endpoint

    def _base(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    # -- connectors --------------------------------------------------------------------------------
    async def connectors(self, request: Request, principal: Principal) -> Response:
        base = self._base(request)
        if request.method == "GET":
            _require(principal, READ, "listing data connectors")
            items = await self.engine.list_resources(K_CONNECTOR, tenant=principal.tenant)
            return JSONResponse({"@odata.context": f"{base}/beta/$metadata#external/industryData/dataConnectors",
                                 "value": [self._connector_json(r, base, entity=False) for r in items]})
        _require(principal, WRITE, "creating a data connector")
        body = await json_object(request)
        if str(body.get("@odata.type", "")).lstrip("#") != CONNECTOR_TYPE.lstrip("#"):
            raise GraphError(400, "BadRequest", f"@odata.type must be {CONNECTOR_TYPE}; chunkd supports "
                             "azureDataLakeConnector only")
        data = _connector_fields(body, create=True)
        res = await self.engine.create_resource(K_CONNECTOR, str(uuid.uuid4()), principal, data)
        return JSONResponse(self._connector_json(res, base), status_code=201,
                            headers={"Location": f"{base}{PREFIX}/dataConnectors/{res.id}"})

    async def connector(self, request: Request, principal: Principal) -> Response:
        cid = request.path_params["cid"]
        if request.method == "GET":
            _require(principal, READ, "reading a data connector")
            return JSONResponse(self._connector_json(await self._get_connector(principal, cid), self._base(request)))
        _require(principal, WRITE, "changing a data connector")
        if request.method == "DELETE":
            res = await self._get_connector(principal, cid)
            await self.engine.delete_resource(K_CONNECTOR, res.id)
            for container in await self.engine.list_resources(K_CONTAINER, parent=res.id):
                await self.store.discard(container.id)  # the upload containers go with their connector
            return Response(status_code=204)
        body = await json_object(request)
        if "@odata.type" in body and str(body["@odata.type"]).lstrip("#") != CONNECTOR_TYPE.lstrip("#"):
            raise GraphError(400, "BadRequest", "the connector's @odata.type cannot change")
        changes = _connector_fields(body, create=False)
        for _ in range(20):
            res = await self._get_connector(principal, cid)
            try:
                await self.engine.update_resource(res, {**res.data, **changes})
                return Response(status_code=204)
            except errors.Conflict:
                continue
        raise GraphError(409, "conflict", "the connector is changing too fast")

    async def _get_connector(self, principal: Principal, cid: str) -> Resource:
        res = await self.engine.get_resource(K_CONNECTOR, cid)
        if res is None or res.tenant != principal.tenant:
            raise GraphError(404, "itemNotFound", f"data connector {cid} does not exist")
        return res

    def _connector_json(self, res: Resource, base: str, entity: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if entity:
            out["@odata.context"] = f"{base}/beta/$metadata#external/industryData/dataConnectors/$entity"
        out.update({"@odata.type": CONNECTOR_TYPE, "id": res.id, "displayName": res.data["displayName"]})
        if "fileFormat" in res.data:
            out["fileFormat"] = res.data["fileFormat"]
        return out

    # -- actions -----------------------------------------------------------------------------------
    async def action(self, request: Request, principal: Principal) -> Response:
        action = request.path_params["action"].rstrip("/")
        lowered = action.lower()
        if request.method == "GET" and lowered.split("(", 1)[0] == _GET_UPLOAD_SESSION:
            return await self.get_upload_session(request, principal, _reset_flag(request, action))
        if request.method == "POST" and lowered in _VALIDATE:
            return await self.validate(request, principal)
        raise GraphError(400 if lowered in _VALIDATE or lowered.startswith(_GET_UPLOAD_SESSION) else 404,
                         "BadRequest" if lowered in _VALIDATE else "itemNotFound",
                         f"{request.method} {action} is not supported on a data connector")

    async def get_upload_session(self, request: Request, principal: Principal, reset: bool) -> Response:
        _require(principal, UPLOAD, "getUploadSession")
        cid = request.path_params["cid"]
        await self.store.sweep_owner((await self._get_connector(principal, cid)).id)
        for _ in range(20):
            conn = await self._get_connector(principal, cid)
            current = await self.store.container(str(conn.data.get("containerId") or "")) \
                if conn.data.get("containerId") else None
            live = current is not None and current.data["state"] == OPEN \
                and float(current.data["sessionExpires"]) > time.time()
            if current is not None and live and not reset:
                return JSONResponse(self._session_json(request, current))
            fresh = await self.store.create_container(principal, conn.id, self.config.session_ttl,
                                                      self.config.container_ttl)
            try:
                await self.engine.update_resource(conn, {**conn.data, "containerId": fresh.id})
            except (errors.Conflict, errors.NotFound):
                await self.store.discard(fresh.id)  # another request switched the connector first
                continue
            if current is not None and current.data["state"] == OPEN:
                await self.store.discard(current.id)  # reset (or a session that ended unvalidated)
            return JSONResponse(self._session_json(request, fresh))
        raise GraphError(409, "conflict", "the connector's upload session is changing too fast")

    def _session_json(self, request: Request, container: Resource) -> dict[str, Any]:
        base = self._base(request)
        expires = float(container.data["sessionExpires"])
        protocol = "https" if request.url.scheme == "https" else "https,http"
        token = sas.sign_container_sas(self.key, self.config.account, container.id, permissions=SAS_PERMISSIONS,
                                       expiry=datetime.fromtimestamp(expires, UTC), protocol=protocol)
        return {"@odata.context": f"{base}/beta/$metadata#{NS}.fileUploadSession",
                "containerExpirationDateTime": _iso(float(container.data["containerExpires"])),
                "containerId": container.id,
                "sessionExpirationDateTime": _iso(expires),
                # the emulator layout: Azure's Go SDK (rclone, AzCopy) reads a URL on an IP host only as
                # /{account}/{container}; /blob/{account}/... stays an alias for URLs handed out before
                "sessionUrl": f"{base}/{self.config.account}/{container.id}?{token}"}

    async def validate(self, request: Request, principal: Principal) -> Response:
        _require(principal, UPLOAD, "validate")
        conn = await self._get_connector(principal, request.path_params["cid"])
        container_id = str(conn.data.get("containerId") or "")
        container = await self.store.container(container_id) if container_id else None
        if container is None or container.data["state"] != OPEN:
            raise GraphError(400, "BadRequest", "the data connector has no open upload session; call "
                             "getUploadSession first")
        now = time.time()
        op_id = str(uuid.uuid4())
        op = await self.engine.create_resource(K_OPERATION, op_id, principal, {
            "status": "running", "created": now, "lastAction": now, "connectorId": conn.id,
            "containerId": container_id, "errors": [], "warnings": [], "validatedFiles": []}, parent=conn.id)
        blobs = await self.store.seal(container_id)  # from here on the session's SAS cannot write
        ctx = ValidationContext(connector=conn.data, container_id=container_id, blobs=blobs,
                                uncommitted=await self.store.uncommitted_names(container_id),
                                read=lambda b: self.store.read(b, 0, int(b.data["size"])))
        problems = await run_rules(ctx, self.rules)
        bad = {p.target for p in problems if p.severity == "error" or p.code == "UnexpectedFile"}
        data = {**op.data, "status": "succeeded", "lastAction": time.time(),
                "errors": [p.as_public_error() for p in problems if p.severity == "error"],
                "warnings": [p.as_public_error() for p in problems if p.severity == "warning"],
                "validatedFiles": [str(b.data["name"]) for b in blobs if str(b.data["name"]) not in bad]}
        await self.engine.update_resource(op, data)
        location = f"{self._base(request)}{PREFIX}/operations/{op_id}"
        return Response(status_code=202, headers={"Location": location})

    # -- operations --------------------------------------------------------------------------------
    async def operation(self, request: Request, principal: Principal) -> Response:
        _require(principal, OPERATIONS, "reading an operation")
        oid = request.path_params["oid"]
        res = await self.engine.get_resource(K_OPERATION, oid)
        if res is None or res.tenant != principal.tenant:
            raise GraphError(404, "itemNotFound", f"operation {oid} does not exist")
        base = self._base(request)
        d = res.data
        return JSONResponse({
            "@odata.context": f"{base}/beta/$metadata#external/industryData/operations/$entity",
            "@odata.type": f"#{NS}.fileValidateOperation", "id": res.id,
            "createdDateTime": _iso(d["created"]), "lastActionDateTime": _iso(d["lastAction"]),
            "status": d["status"], "statusDetail": None,
            "resourceLocation": f"{base}{PREFIX}/dataConnectors/{d['connectorId']}",
            "validatedFiles": d["validatedFiles"], "errors": d["errors"], "warnings": d["warnings"]})


def _reset_flag(request: Request, action: str) -> bool:
    """``resetSession`` from the query or from the OData function call ``getUploadSession(resetSession=true)``,
    parsed strictly: one pair of parentheses closing the segment, ``name=value`` pairs naming only
    ``resetSession``, once, with a Boolean literal. Anything else is 400 before anything changes."""
    value = first_query(request.scope).get("resetSession")
    call = _CALL.fullmatch(action)
    if call is None:
        raise GraphError(400, "BadRequest", f"malformed function call {action[:200]!r}")
    inline = call.group(2)
    if inline is not None and inline.strip():
        for part in inline.split(","):
            name, eq, v = (p.strip() for p in part.partition("="))
            if name != "resetSession" or not eq:
                raise GraphError(400, "BadRequest", f"unknown or malformed function parameter {part.strip()[:100]!r}")
            if value is not None:
                raise GraphError(400, "BadRequest", "resetSession is given more than once")
            value = v
    if value is None or value == "":
        return False
    if value.lower() not in ("true", "false"):
        raise GraphError(400, "BadRequest", f"resetSession must be true or false, not {value[:100]!r}")
    return value.lower() == "true"


def _connector_fields(body: dict[str, Any], *, create: bool) -> dict[str, Any]:
    unknown = sorted(set(body) - _WRITABLE)
    if unknown:
        raise GraphError(400, "BadRequest", f"property {unknown[0]!r} does not exist on type {CONNECTOR_TYPE[1:]}")
    out: dict[str, Any] = {}
    if "displayName" in body or create:
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise GraphError(400, "BadRequest", "displayName is required: a non-empty string of at most 100 "
                             "characters")
        out["displayName"] = name
    if "fileFormat" in body:
        ff = body["fileFormat"]
        if not isinstance(ff, dict) or not isinstance(ff.get("code", ""), str):
            raise GraphError(400, "BadRequest", "fileFormat must be a fileFormatReferenceValue object with a code")
        out["fileFormat"] = ff
    if "sourceSystem@odata.bind" in body:
        out["sourceSystem"] = str(body["sourceSystem@odata.bind"])
    return out
