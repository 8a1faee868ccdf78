"""The records of Azure-Blob-style upload containers, shared by the container, blob and block services:
:class:`Container`, :class:`Blob`, :class:`BlobProps`, the conditions of a write (:class:`Conditions`), the
status-free domain error :class:`BlobFault`, and how ids are derived. No HTTP and no engine calls here.

Each record converts to and from its engine :class:`~chunkd.core.resources.Resource` in exactly one place
(``from_resource`` / ``to_resource``); the documents keep the layout they have always had on disk:

* ``blobcontainer`` ``{containerId}``, parent = its owner: ``state`` (``open`` | ``validated`` |
  ``discarded``), ``owner`` (e.g. the data connector id), ``sessionExpires`` / ``containerExpires`` (epoch
  seconds), ``etag``, and once validated ``validated`` (name -> etag of the validated set).
* ``blob`` ``{containerId}:{sha256(name)}``, parent = container: ``name``, ``object`` (engine key),
  ``size``, ``etag``, ``created`` / ``modified``, content headers, ``md5``, ``meta`` (x-ms-meta-*),
  ``blocks`` (the committed block list, ``[[id, size], ...]``).

Resource ids are hashes because blob names (up to 1024 characters) exceed the id column.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chunkd.core.principal import Principal
from chunkd.core.resources import Resource
from chunkd.services.envelope import Stored

NAMESPACE = "blob"  # engine namespace of blob bytes (objects ``{containerId}/{random}``)
FAMILY = "blobblock"  # session family of block sessions
K_CONTAINER, K_BLOB = "blobcontainer", "blob"


class ContainerState(StrEnum):
    OPEN = "open"
    VALIDATED = "validated"  # finalised by Industry Data's validate: read-only
    DISCARDED = "discarded"  # reset, expired or deleted: gone for every client


class FaultCode(StrEnum):
    """What went wrong, in Azure's words (the Blob front end maps each code to its HTTP status)."""

    CONTAINER_NOT_FOUND = "ContainerNotFound"
    FINALISED = "AuthorizationFailure"  # the container was sealed by validate
    BLOB_NOT_FOUND = "BlobNotFound"
    BLOB_EXISTS = "BlobAlreadyExists"
    CONDITION_NOT_MET = "ConditionNotMet"
    INVALID_BLOCK = "InvalidBlobOrBlock"
    INVALID_BLOCK_LIST = "InvalidBlockList"


_MESSAGES = {
    FaultCode.CONTAINER_NOT_FOUND: "The specified container does not exist.",
    FaultCode.FINALISED: "This request is not authorized to perform this operation.",
    FaultCode.BLOB_NOT_FOUND: "The specified blob does not exist.",
    FaultCode.BLOB_EXISTS: "The specified blob already exists.",
    FaultCode.CONDITION_NOT_MET: "The condition specified using HTTP conditional header(s) is not met.",
    FaultCode.INVALID_BLOCK: "The specified blob or block content is invalid.",
    FaultCode.INVALID_BLOCK_LIST: "The specified block list is invalid.",
}


class BlobFault(Exception):
    """A refusal by the blob services: a :class:`FaultCode`, Azure's message for it, and details (extra
    elements of the error document, e.g. ``Reason``). Carries no HTTP status."""

    def __init__(self, code: FaultCode, message: str = "", **details: str) -> None:
        self.code = code
        self.message = message or _MESSAGES[code]
        self.details = details
        super().__init__(self.message)


def container_not_found() -> BlobFault:
    return BlobFault(FaultCode.CONTAINER_NOT_FOUND)


def finalised() -> BlobFault:
    return BlobFault(FaultCode.FINALISED,
                     Reason="the upload session was finalised by validate; request a new upload session")


def blob_not_found() -> BlobFault:
    return BlobFault(FaultCode.BLOB_NOT_FOUND)


def new_etag() -> str:
    return "0x8D" + secrets.token_hex(7).upper()[:13]


def name_hash(text: str, n: int = 64) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def blob_id(container: str, name: str) -> str:
    return f"{container}:{name_hash(name)}"


def block_session_id(container: str, name: str) -> str:
    """The core session holding the uncommitted blocks of one blob."""
    return "blk-" + name_hash(f"{container}\0{name}", 60)


def block_principal(container: str) -> Principal:
    """The owner of a container's block sessions (SAS requests have no user; Put Block reads no container,
    so this principal has no tenant)."""
    return Principal(kind="app", app=f"blobcontainer:{container}")


def blob_principal(container: Container) -> Principal:
    """The creator of a container's blobs: the container's app principal in the container's tenant."""
    return Principal(kind="app", tenant=container.tenant, app=f"blobcontainer:{container.id}")


@dataclass(frozen=True)
class Container:
    """An upload container. ``validated`` is the set validate recorded (name -> etag), None before."""

    id: str
    owner: str
    state: ContainerState
    session_expires: float
    container_expires: float
    etag: str
    validated: Mapping[str, str] | None = None
    stored: Stored = field(default_factory=Stored)

    @property
    def tenant(self) -> str:
        return self.stored.tenant

    @property
    def is_open(self) -> bool:
        return self.state is ContainerState.OPEN

    @classmethod
    def from_resource(cls, res: Resource) -> Container:
        d = res.data
        recorded = d.get("validated")
        return cls(id=res.id, owner=str(d.get("owner", res.parent)), state=ContainerState(d.get("state", "open")),
                   session_expires=float(d.get("sessionExpires", 0)),
                   container_expires=float(d.get("containerExpires", 0)), etag=str(d.get("etag", "")),
                   validated=dict(recorded) if isinstance(recorded, dict) else None, stored=Stored.of(res))

    def to_resource(self) -> Resource:
        data: dict[str, Any] = {"state": self.state.value, "owner": self.owner, "sessionExpires": self.session_expires,
                                "containerExpires": self.container_expires, "etag": self.etag}
        if self.validated is not None:
            data["validated"] = dict(self.validated)
        return self.stored.resource(K_CONTAINER, self.id, data, parent=self.owner)


@dataclass(frozen=True)
class BlobProps:
    """Settable blob properties: content headers and user metadata."""

    content_type: str = "application/octet-stream"
    content_encoding: str = ""
    content_language: str = ""
    content_disposition: str = ""
    cache_control: str = ""
    md5: str = ""  # base64, as Content-MD5
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Blob:
    """A committed blob: its current bytes are the engine object ``object`` of :data:`NAMESPACE`.
    ``blocks`` is the committed block list (id, size) in blob order, empty for a Put Blob."""

    container: str
    name: str
    object: str
    size: int
    etag: str
    created: float
    modified: float
    props: BlobProps = field(default_factory=BlobProps)
    blocks: tuple[tuple[str, int], ...] = ()
    stored: Stored = field(default_factory=Stored)

    @property
    def id(self) -> str:
        return blob_id(self.container, self.name)

    @classmethod
    def from_resource(cls, res: Resource) -> Blob:
        d = res.data
        props = BlobProps(content_type=str(d.get("contentType") or "application/octet-stream"),
                          content_encoding=str(d.get("contentEncoding", "")),
                          content_language=str(d.get("contentLanguage", "")),
                          content_disposition=str(d.get("contentDisposition", "")),
                          cache_control=str(d.get("cacheControl", "")), md5=str(d.get("md5", "")),
                          meta={str(k): str(v) for k, v in d.get("meta", {}).items()})
        return cls(container=res.parent, name=str(d["name"]), object=str(d["object"]), size=int(d["size"]),
                   etag=str(d["etag"]), created=float(d.get("created", res.created_at)),
                   modified=float(d.get("modified", res.modified_at)), props=props,
                   blocks=tuple((str(b), int(s)) for b, s in d.get("blocks", [])), stored=Stored.of(res))

    def to_resource(self) -> Resource:
        p = self.props
        data: dict[str, Any] = {
            "name": self.name, "object": self.object, "size": self.size, "etag": self.etag,
            "modified": self.modified, "created": self.created, "blocks": [[b, s] for b, s in self.blocks],
            "contentType": p.content_type, "contentEncoding": p.content_encoding,
            "contentLanguage": p.content_language, "contentDisposition": p.content_disposition,
            "cacheControl": p.cache_control, "md5": p.md5, "meta": dict(p.meta)}
        return self.stored.resource(K_BLOB, self.id, data, parent=self.container)


@dataclass(frozen=True)
class Conditions:
    """Conditional headers of a request (If-Match / If-None-Match)."""

    if_match: str = ""
    if_none_match: str = ""

    @property
    def any(self) -> bool:
        return bool(self.if_match or self.if_none_match)

    def check_write(self, existing: Blob | None) -> None:
        """Raise the BlobFault a write meets when these conditions do not hold for ``existing``."""
        etag = existing.etag if existing else None
        if self.if_none_match == "*" and existing is not None:
            raise BlobFault(FaultCode.BLOB_EXISTS)
        if self.if_none_match and self.if_none_match != "*" and etag is not None \
                and etag_in(etag, self.if_none_match):
            raise BlobFault(FaultCode.CONDITION_NOT_MET)
        if self.if_match and (etag is None or not (self.if_match.strip() == "*" or etag_in(etag, self.if_match))):
            if etag is None:
                raise blob_not_found()
            raise BlobFault(FaultCode.CONDITION_NOT_MET)


def etag_in(etag: str, header: str) -> bool:
    """Whether ``etag`` is one of the (quoted or bare) ETags of a comma-separated header value."""
    return etag in {t.strip().strip('"') for t in header.split(",")}
