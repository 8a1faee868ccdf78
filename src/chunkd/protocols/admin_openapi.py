"""The OpenAPI 3.0 document of the ``/chunkd/v1`` admin API, served at ``/chunkd/v1/openapi.json``.

Hand-written (the API is small): ``tests/protocols/test_admin_openapi.py`` checks that every admin route is
in it and every path in it is a route, so the two cannot drift apart, and a bounded schemathesis run checks
that real responses conform to it. Pure data, no I/O; the document needs no credential to read.
"""

from __future__ import annotations

from typing import Any

_RANGE = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2,
          "description": "half-open [start, end) byte range"}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}
_DATE = {"type": "string", "description": "ISO 8601 UTC time"}
_NULLABLE_STR = {"type": "string", "nullable": True}
_SESSION = {
    "type": "object",
    "required": ["id", "family", "state", "owner", "key", "length", "received", "createdAt", "modifiedAt",
                 "expiresAt"],
    "properties": {
        "id": {"type": "string"}, "family": {"type": "string"}, "state": {"type": "string"},
        "owner": {"type": "string"}, "tenant": _NULLABLE_STR, "namespace": {"type": "string"},
        "key": {"type": "string"}, "name": _NULLABLE_STR, "contentType": _NULLABLE_STR,
        "length": {"type": "integer", "nullable": True, "minimum": 0},
        "received": {"type": "integer", "minimum": 0},
        "createdAt": _DATE, "modifiedAt": _DATE, "expiresAt": _DATE,
    },
}
_COUNTERS = {"type": "object", "properties": {k: {"type": "integer", "minimum": 0} for k in
                                               ("writes", "body_bytes", "new_bytes", "duplicate_writes")}}
_DETAIL = {"allOf": [{"$ref": "#/components/schemas/Session"}, {
    "type": "object",
    "required": ["receivedRanges", "missingRanges", "receivedRangesTruncated", "missingRangesTruncated"],
    "properties": {
        "receivedRanges": {"type": "array", "items": _RANGE}, "receivedRangesTruncated": {"type": "boolean"},
        "missingRanges": {"type": "array", "items": _RANGE}, "missingRangesTruncated": {"type": "boolean"},
        "transfer": {**_COUNTERS, "description": "this server process's counters for the session"},
    }}]}


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "bad parameter", 401: "no or invalid credential", 403: "needs the Chunkd.Admin role",
            404: "no such session visible to the caller", 409: "conflicting state", 503: "store unavailable"}
    return {str(s): _json("Error", text[s]) for s in statuses}


_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "chunkd admin API", "version": "1",
             "description": "List, inspect and cancel upload sessions of every API family. A caller sees only "
                            "its own sessions unless it holds the Chunkd.Admin role."},
    "servers": [{"url": "/"}],
    "security": _SECURITY,
    "paths": {
        "/chunkd/v1/sessions": {"get": {
            "operationId": "listSessions", "summary": "the caller's sessions (everyone's with all=true)",
            "parameters": [
                {"name": "family", "in": "query", "schema": {"type": "string"},
                 "description": "servicefabric, graphprint, tus, blob, industrydata..."},
                {"name": "owner", "in": "query", "schema": {"type": "string"},
                 "description": "only this owner's sessions (with all=true)"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
                 "description": "page size, clamped to 1..1000 (default 100)"},
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                {"name": "all", "in": "query", "schema": {"type": "boolean"}},
            ],
            "responses": {"200": _json("SessionList", "one page of sessions"), **_errors(400, 401, 403, 503)},
        }},
        "/chunkd/v1/sessions/{session_id}": {
            "get": {"operationId": "getSession", "summary": "one session with its received and missing ranges",
                    "parameters": [_ID],
                    "responses": {"200": _json("SessionDetail", "the session"), **_errors(401, 404, 503)}},
            "delete": {"operationId": "deleteSession",
                       "summary": "cancel: staged bytes are discarded, a committed file stays",
                       "parameters": [_ID],
                       "responses": {"204": {"description": "cancelled"}, **_errors(401, 404, 409, 503)}},
        },
        "/chunkd/v1/stats": {"get": {
            "operationId": "getStats", "summary": "this server process's transfer counters (Chunkd.Admin)",
            "responses": {"200": _json("Stats", "counters"), **_errors(401, 403)}}},
        "/chunkd/v1/summary": {"get": {
            "operationId": "getSummary",
            "summary": "cluster-wide byte totals and session counts per family and state, from the metadata "
                       "store (the caller's own sessions unless all=true)",
            "parameters": [{"name": "all", "in": "query", "schema": {"type": "boolean"}}],
            "responses": {"200": _json("Summary", "totals"), **_errors(400, 401, 403, 503)}}},
        "/chunkd/v1/openapi.json": {"get": {
            "operationId": "getOpenAPI", "summary": "this document", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.0 document",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "Error": _ERROR, "Session": _SESSION, "SessionDetail": _DETAIL,
            "SessionList": {"type": "object", "required": ["sessions", "next"], "properties": {
                "sessions": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}},
                "next": {"type": "string", "nullable": True}}},
            "Stats": {"allOf": [_COUNTERS, {"type": "object", "properties": {"scope": {"type": "string"}}}]},
            "Summary": {"type": "object",
                        "required": ["sessions", "bytesReceived", "bytesExpected", "scope", "truncated"],
                        "properties": {
                "scope": {"type": "string", "enum": ["own", "all"]}, "truncated": {"type": "boolean"},
                "bytesReceived": {"type": "integer", "minimum": 0},
                "bytesExpected": {"type": "integer", "minimum": 0},
                "sessions": {"type": "object", "description": "family -> state -> count",
                             "additionalProperties": {"type": "object",
                                                      "additionalProperties": {"type": "integer"}}}}},
        },
    },
}
