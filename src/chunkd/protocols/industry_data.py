"""Microsoft Graph Industry Data upload sessions (``/beta/external/industryData/...``): the HTTP side.

Data connectors, upload sessions and validate are domain services (:mod:`chunkd.services.connectors`,
:mod:`chunkd.services.validations`); this module parses requests, checks permissions and answers Graph JSON.
``getUploadSession`` answers a ``fileUploadSession`` whose ``sessionUrl`` is a container SAS for chunkd's own
blob endpoint (:mod:`chunkd.protocols.blob`), so Azure Blob clients upload into it unchanged. Lifetimes and
differences from the real service: docs/industry-data.md.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
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
from chunkd.core.engine import Engine
from chunkd.core.principal import Principal
from chunkd.protocols._graph import GraphError, authenticate, graph_call, json_object
from chunkd.protocols._http import first_query, iso_date, public_base, public_scheme
from chunkd.protocols._routing import ANY_PATH
from chunkd.services.blob_model import Container
from chunkd.services.blobs import BlobServices
from chunkd.services.connectors import (
    DISPLAY_NAME_RULE,
    Connector,
    ConnectorFault,
    ConnectorFaultCode,
    ConnectorFields,
    ConnectorService,
)
from chunkd.services.validation_rules import DEFAULT_RULES, Problem, Rule
from chunkd.services.validations import Operation, ValidationService

PREFIX = "/beta/external/industryData"
NS = "microsoft.graph.industryData"
CONNECTOR_TYPE = f"#{NS}.azureDataLakeConnector"
SAS_PERMISSIONS = "racwdl"
_GET_UPLOAD_SESSION = f"{NS}.azuredatalakeconnector/getuploadsession".lower()
_VALIDATE = ("validate", f"{NS}.validate".lower())
_CALL = re.compile(r"([^()]*)(?:\(([^()]*)\))?")  # an OData function segment: name, then (params) at most once
_WRITABLE = {"displayName", "fileFormat", "sourceSystem@odata.bind", "fileFormat@odata.bind", "@odata.type"}

READ = (INDUSTRYDATA_READ_ALL, INDUSTRYDATA_READWRITE_ALL)
WRITE = (INDUSTRYDATA_READWRITE_ALL,)
UPLOAD = (INDUSTRYDATA_UPLOAD, INDUSTRYDATA_READWRITE_ALL)
OPERATIONS = (INDUSTRYDATA_READBASIC_ALL, INDUSTRYDATA_UPLOAD, INDUSTRYDATA_READ_ALL, INDUSTRYDATA_READWRITE_ALL)

# the connector services' fault codes -> (status, Graph error code)
FAULTS: dict[ConnectorFaultCode, tuple[int, str]] = {
    ConnectorFaultCode.NOT_FOUND: (404, "itemNotFound"),
    ConnectorFaultCode.INVALID: (400, "BadRequest"),
    ConnectorFaultCode.NO_SESSION: (400, "BadRequest"),
}


class _Function(Convertor[str]):
    """An OData function or action segment, matched case-insensitively as Graph does (``GetUploadSession``
    from the older doc page works); the value is the segment as sent, parameters and trailing ``/`` included."""

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _GetUploadSession(_Function):
    # anything from "(" on belongs to the call, so that a malformed call reaches the handler (400), not 404
    regex = rf"(?i:{re.escape(_GET_UPLOAD_SESSION)})(?:\((?s:.*)|/*)"


class _Validate(_Function):
    regex = rf"(?i:(?:{re.escape(NS)}\.)?validate)/*"


_GET_SESSION_FN, _VALIDATE_FN = "idgetuploadsession", "idvalidate"
register_url_convertor(_GET_SESSION_FN, _GetUploadSession())
register_url_convertor(_VALIDATE_FN, _Validate())


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


def _base(request: Request) -> str:
    return public_base(request)


Handler = Callable[[Request, Principal], Awaitable[Response]]


class IndustryDataAPI:
    """Routes for data connectors, upload sessions, validate and operations."""

    def __init__(self, engine: Engine, authenticator: Authenticator, key: bytes,
                 config: IndustryDataConfig | None = None, rules: Sequence[Rule] = DEFAULT_RULES) -> None:
        self.auth = authenticator
        self.key = key
        self.config = config or IndustryDataConfig()
        blob = BlobServices.over(engine)
        self.connectors = ConnectorService(engine, blob.containers, self.config.session_ttl,
                                           self.config.container_ttl)
        self.validations = ValidationService(engine, self.connectors, blob, rules)

    @property
    def routes(self) -> list[BaseRoute]:
        c = f"{PREFIX}/dataConnectors"
        w = self._wrap
        return [
            Route(c, w(self.list_connectors), methods=["GET"]),
            Route(c, w(self.create_connector), methods=["POST"]),
            Route(f"{c}/{{cid}}", w(self.get_connector), methods=["GET"]),
            Route(f"{c}/{{cid}}", w(self.patch_connector), methods=["PATCH"]),
            Route(f"{c}/{{cid}}", w(self.delete_connector), methods=["DELETE"]),
            # HEAD first: Starlette lets a GET route take HEAD, and a HEAD must not open an upload session
            Route(f"{c}/{{cid}}/{{action:{ANY_PATH}}}", w(self.unsupported), methods=["HEAD"]),
            Route(f"{c}/{{cid}}/{{action:{_GET_SESSION_FN}}}", w(self.get_upload_session), methods=["GET"]),
            Route(f"{c}/{{cid}}/{{action:{_VALIDATE_FN}}}", w(self.validate), methods=["POST"]),
            Route(f"{c}/{{cid}}/{{action:{ANY_PATH}}}", w(self.unsupported), methods=["GET", "POST"]),
            Route(f"{PREFIX}/operations/{{oid}}", w(self.operation), methods=["GET"]),
        ]

    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            async def run() -> Response:
                try:
                    return await handler(request, authenticate(self.auth, request))
                except ConnectorFault as fault:
                    status, code = FAULTS[fault.code]
                    raise GraphError(status, code, fault.message) from fault

            return await graph_call(request, run)

        return endpoint

    # -- connectors --------------------------------------------------------------------------------
    async def list_connectors(self, request: Request, principal: Principal) -> Response:
        _require(principal, READ, "listing data connectors")
        base = _base(request)
        items = await self.connectors.of_tenant(principal.tenant)
        return JSONResponse({"@odata.context": f"{base}/beta/$metadata#external/industryData/dataConnectors",
                             "value": [_connector_json(c, base, entity=False) for c in items]})

    async def create_connector(self, request: Request, principal: Principal) -> Response:
        _require(principal, WRITE, "creating a data connector")
        body = await json_object(request)
        if str(body.get("@odata.type", "")).lstrip("#") != CONNECTOR_TYPE.lstrip("#"):
            raise GraphError(400, "BadRequest", f"@odata.type must be {CONNECTOR_TYPE}; chunkd supports "
                             "azureDataLakeConnector only")
        connector = await self.connectors.create(principal, _connector_fields(body))
        base = _base(request)
        return JSONResponse(_connector_json(connector, base), status_code=201,
                            headers={"Location": f"{base}{PREFIX}/dataConnectors/{connector.id}"})

    async def get_connector(self, request: Request, principal: Principal) -> Response:
        _require(principal, READ, "reading a data connector")
        connector = await self.connectors.get(principal.tenant, request.path_params["cid"])
        return JSONResponse(_connector_json(connector, _base(request)))

    async def patch_connector(self, request: Request, principal: Principal) -> Response:
        _require(principal, WRITE, "changing a data connector")
        body = await json_object(request)
        if "@odata.type" in body and str(body["@odata.type"]).lstrip("#") != CONNECTOR_TYPE.lstrip("#"):
            raise GraphError(400, "BadRequest", "the connector's @odata.type cannot change")
        await self.connectors.update(principal.tenant, request.path_params["cid"], _connector_fields(body))
        return Response(status_code=204)

    async def delete_connector(self, request: Request, principal: Principal) -> Response:
        _require(principal, WRITE, "changing a data connector")
        await self.connectors.delete(principal.tenant, request.path_params["cid"])
        return Response(status_code=204)

    # -- actions -----------------------------------------------------------------------------------
    async def unsupported(self, request: Request, principal: Principal) -> Response:
        """Any other segment or method under a connector: 400 for a known function with the wrong method,
        404 for an unknown one."""
        action = request.path_params["action"].rstrip("/")
        lowered = action.lower()
        raise GraphError(400 if lowered in _VALIDATE or lowered.startswith(_GET_UPLOAD_SESSION) else 404,
                         "BadRequest" if lowered in _VALIDATE else "itemNotFound",
                         f"{request.method} {action} is not supported on a data connector")

    async def get_upload_session(self, request: Request, principal: Principal) -> Response:
        reset = _reset_flag(request, request.path_params["action"].rstrip("/"))
        _require(principal, UPLOAD, "getUploadSession")
        container = await self.connectors.upload_session(principal, request.path_params["cid"], reset)
        return JSONResponse(self._session_json(request, container))

    def _session_json(self, request: Request, container: Container) -> dict[str, Any]:
        base = _base(request)
        protocol = "https" if public_scheme(request) == "https" else "https,http"
        token = sas.sign_container_sas(self.key, self.config.account, container.id, permissions=SAS_PERMISSIONS,
                                       expiry=datetime.fromtimestamp(container.session_expires, UTC),
                                       protocol=protocol)
        return {"@odata.context": f"{base}/beta/$metadata#{NS}.fileUploadSession",
                "containerExpirationDateTime": _iso(container.container_expires),
                "containerId": container.id,
                "sessionExpirationDateTime": _iso(container.session_expires),
                # the emulator layout: Azure's Go SDK (rclone, AzCopy) reads a URL on an IP host only as
                # /{account}/{container}; /blob/{account}/... stays an alias for URLs handed out before
                "sessionUrl": f"{base}/{self.config.account}/{container.id}?{token}"}

    async def validate(self, request: Request, principal: Principal) -> Response:
        _require(principal, UPLOAD, "validate")
        op = await self.validations.validate(principal, request.path_params["cid"])
        return Response(status_code=202, headers={"Location": f"{_base(request)}{PREFIX}/operations/{op.id}"})

    # -- operations --------------------------------------------------------------------------------
    async def operation(self, request: Request, principal: Principal) -> Response:
        _require(principal, OPERATIONS, "reading an operation")
        op = await self.validations.get(principal.tenant, request.path_params["oid"])
        return JSONResponse(_operation_json(op, _base(request)))


def _connector_json(connector: Connector, base: str, entity: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if entity:
        out["@odata.context"] = f"{base}/beta/$metadata#external/industryData/dataConnectors/$entity"
    out.update({"@odata.type": CONNECTOR_TYPE, "id": connector.id, "displayName": connector.display_name})
    if connector.file_format is not None:
        out["fileFormat"] = dict(connector.file_format)
    return out


def _public_error(problem: Problem) -> dict[str, Any]:
    return {"code": problem.code, "message": problem.message, "target": problem.target, "details": [],
            "innerError": None}


def _operation_json(op: Operation, base: str) -> dict[str, Any]:
    return {
        "@odata.context": f"{base}/beta/$metadata#external/industryData/operations/$entity",
        "@odata.type": f"#{NS}.fileValidateOperation", "id": op.id,
        "createdDateTime": _iso(op.created), "lastActionDateTime": _iso(op.last_action),
        "status": op.status, "statusDetail": None,
        "resourceLocation": f"{base}{PREFIX}/dataConnectors/{op.connector_id}",
        "validatedFiles": list(op.validated_files), "errors": [_public_error(p) for p in op.errors],
        "warnings": [_public_error(p) for p in op.warnings]}


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


def _connector_fields(body: dict[str, Any]) -> ConnectorFields:
    """The settable properties of a connector body (create or PATCH); 400 for unknown ones or wrong types."""
    unknown = sorted(set(body) - _WRITABLE)
    if unknown:
        raise GraphError(400, "BadRequest", f"property {unknown[0]!r} does not exist on type {CONNECTOR_TYPE[1:]}")
    name = body.get("displayName")
    if "displayName" in body and not isinstance(name, str):
        raise GraphError(400, "BadRequest", DISPLAY_NAME_RULE)
    file_format = body.get("fileFormat")
    if "fileFormat" in body and (not isinstance(file_format, dict) or not isinstance(file_format.get("code", ""),
                                                                                    str)):
        raise GraphError(400, "BadRequest", "fileFormat must be a fileFormatReferenceValue object with a code")
    source = str(body["sourceSystem@odata.bind"]) if "sourceSystem@odata.bind" in body else None
    return ConnectorFields(display_name=name if isinstance(name, str) else None,
                           file_format=file_format if isinstance(file_format, dict) else None, source_system=source)
