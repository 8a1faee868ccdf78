"""Rows of the SQL store as core values, and back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chunkd.core.models import Piece, Session, SessionState
from chunkd.core.resources import Resource
from chunkd.metadata.schema import resources, sessions

SESSION_COLUMNS = tuple(c.name for c in sessions.c)
RESOURCE_COLUMNS = tuple(c.name for c in resources.c)
LIVE = (SessionState.OPEN.value, SessionState.COMMITTING.value, SessionState.COMMITTED.value)
DEAD = tuple(s.value for s in SessionState if s.value not in LIVE)
JSON_FIELDS = ("metadata", "extra")


def session_from(m: Mapping[Any, Any]) -> Session:
    return Session(
        id=m["id"], family=m["family"], owner=m["owner"], tenant=m["tenant"], namespace=m["namespace"],
        key=m["key"], length=m["length"], state=SessionState(m["state"]), created_at=m["created_at"],
        modified_at=m["modified_at"], expires_at=m["expires_at"], content_type=m["content_type"],
        name=m["name"], metadata=json.loads(m["metadata"]), received=m["received"], version=m["version"],
        storage_ref=m["storage_ref"], ttl=m["ttl"], composed_into=m["composed_into"],
        commit_on_complete=bool(m["commit_on_complete"]), extra=json.loads(m["extra"]),
    )


def session_from_tuple(row: tuple[Any, ...]) -> Session:
    return session_from(dict(zip(SESSION_COLUMNS, row, strict=True)))


def session_values(s: Session) -> dict[str, Any]:
    return {
        "id": s.id, "family": s.family, "owner": s.owner, "tenant": s.tenant, "namespace": s.namespace,
        "key": s.key, "length": s.length, "state": s.state.value, "created_at": s.created_at,
        "modified_at": s.modified_at, "expires_at": s.expires_at, "content_type": s.content_type,
        "name": s.name, "metadata": json.dumps(s.metadata), "received": s.received, "version": s.version,
        "storage_ref": s.storage_ref, "extra": json.dumps(s.extra), "ttl": s.ttl,
        "composed_into": s.composed_into, "commit_on_complete": int(s.commit_on_complete),
    }


def column_values(columns: Mapping[str, Any]) -> dict[str, Any]:
    """Typed changes as column values."""
    values = dict(columns)
    for name in JSON_FIELDS:
        if name in values:
            values[name] = json.dumps(values[name])
    if "state" in values:
        values["state"] = SessionState(values["state"]).value
    return values


def piece_from(row: tuple[Any, ...]) -> Piece:
    start, stop, ref, handle, tag = row
    return Piece(ref=ref, start=int(start), end=int(stop), handle=handle, tag=tag)


def resource_from(m: Mapping[Any, Any]) -> Resource:
    return Resource(kind=m["kind"], id=m["id"], tenant=m["tenant"], owner=m["owner"], parent=m["parent"],
                    data=json.loads(m["data"]), created_at=m["created_at"], modified_at=m["modified_at"],
                    version=m["version"])


def resource_from_tuple(row: tuple[Any, ...]) -> Resource:
    return resource_from(dict(zip(RESOURCE_COLUMNS, row, strict=True)))
