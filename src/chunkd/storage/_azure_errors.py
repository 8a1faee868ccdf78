"""The one place where Azure Blob failures become core errors, for :mod:`chunkd.storage.azure`.

Two kinds of failure reach the store: exceptions of azure-storage-blob / azure-core (control calls),
and HTTP answers or aiohttp errors of the store's own Put Block and Get Blob requests (the hot path).
Both are decided by the same table, keyed by Azure's ``x-ms-error-code``, falling back to the status:

=====================================================  ================================================
BlobNotFound, 404                                        ObjectNotFound (the store turns it into
                                                         FileNotFoundError or PiecesMissing by context)
InvalidBlockList, InvalidBlobOrBlock                     PiecesMissing (a staged block is gone)
BlobAlreadyExists                                        AlreadyExists
ConditionNotMet, 412, ...BeingModified, Lease*, Pending  Conflict (someone else changed the blob; retry)
RequestBodyTooLarge, BlockCountExceedsLimit, ..., 413    TooLarge
InvalidRange, 416                                        InvalidRange
anything else: auth (401/403), ContainerNotFound, 5xx,   AzureStoreError (code ``storage_unavailable``):
timeouts, refused connections, unknown codes             an operator problem, never the client's
=====================================================  ================================================
"""

from __future__ import annotations

from enum import Enum

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError

from chunkd.core.errors import (
    AlreadyExists,
    ChunkdError,
    Conflict,
    InvalidRange,
    ObjectNotFound,
    PiecesMissing,
    StorageUnavailable,
    TooLarge,
)

__all__ = ["AzureStoreError", "from_sdk", "from_status", "from_transport", "not_implemented"]


class AzureStoreError(StorageUnavailable):
    """Azure Blob Storage failed or refused chunkd (bad key, missing container, outage)."""


_BY_CODE: dict[str, type[ChunkdError]] = {
    "BlobNotFound": ObjectNotFound,
    "InvalidBlockList": PiecesMissing,
    "InvalidBlobOrBlock": PiecesMissing,
    "BlobAlreadyExists": AlreadyExists,
    "ConditionNotMet": Conflict,
    "TargetConditionNotMet": Conflict,
    "SourceConditionNotMet": Conflict,
    "BlobBeingRehydrated": Conflict,
    "PendingCopyOperation": Conflict,
    "LeaseIdMissing": Conflict,
    "LeaseIdMismatchWithBlobOperation": Conflict,
    "LeaseAlreadyPresent": Conflict,
    "LeaseIsBreakingAndCannotBeAcquired": Conflict,
    "RequestBodyTooLarge": TooLarge,
    "BlockCountExceedsLimit": TooLarge,
    "BlockListTooLong": TooLarge,
    "BlobTooLarge": TooLarge,
    "InvalidRange": InvalidRange,
}
_BY_STATUS: dict[int, type[ChunkdError]] = {
    404: ObjectNotFound,
    409: Conflict,
    412: Conflict,
    413: TooLarge,
    416: InvalidRange,
}
# 404s that mean the store is misconfigured, not that an object is missing
_OPERATOR_CODES = {"ContainerNotFound", "ContainerBeingDeleted", "ContainerDisabled", "AccountIsDisabled",
                   "ResourceNotFound"}


def from_status(status: int, code: str | None, message: str = "") -> ChunkdError:
    """The core error for an Azure answer ``status`` with ``x-ms-error-code`` ``code``."""
    code = code or ""
    text = f"Azure Blob Storage answered {status} {code}: {message}".rstrip(": ")
    if code in _OPERATOR_CODES:
        return AzureStoreError(text)
    kind = _BY_CODE.get(code) or _BY_STATUS.get(status) or AzureStoreError
    return kind(text)


def from_sdk(exc: AzureError) -> ChunkdError:
    """The core error for an exception of azure-storage-blob / azure-core."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, HttpResponseError) and status is not None:
        raw = getattr(exc, "error_code", None)
        # the SDK hands out StorageErrorCode members (a str enum whose str() is "StorageErrorCode.X")
        code = raw.value if isinstance(raw, Enum) else (str(raw) if raw else None)
        if code is None and isinstance(exc, ResourceNotFoundError):
            code = "BlobNotFound"  # a HEAD answer carries no body to name the code
        return from_status(int(status), code, getattr(exc, "reason", None) or "")
    # no answer at all: connection refused or reset, timeouts, undecodable or truncated answers
    detail = getattr(exc, "message", None) or ""
    return AzureStoreError(f"Azure Blob Storage could not be reached: {type(exc).__name__} {detail}".rstrip())


def from_transport(exc: BaseException) -> ChunkdError:
    """The core error for a failure of the store's own HTTP requests (aiohttp, OS errors, timeouts)."""
    return AzureStoreError(f"Azure Blob Storage could not be reached: {type(exc).__name__}: {exc}")


def not_implemented(exc: AzureError) -> bool:
    """The service lacks the operation (Azurite answers APINotImplemented for Put Block From URL)."""
    return isinstance(exc, HttpResponseError) and (
        getattr(exc, "error_code", None) == "APINotImplemented" or exc.status_code == 501)
