"""The one translation of S3 client-library exceptions (obstore, boto3/botocore) into chunkd's errors.

Every call into a client library runs inside :func:`s3_errors`, which maps what the library raises:

==============================================================  =============================================
missing object (404 ``NoSuchKey``, obstore FileNotFoundError),  the caller's ``missing`` exception
unsatisfiable range (416 ``InvalidRange``)                      (FileNotFoundError, or PiecesMissing at commit)
key too long, or a key the library refuses to parse             InvalidPath
``NoSuchUpload`` (a multipart upload aborted meanwhile)         UploadVanished (the assembly starts again)
connection refused/reset, timeouts, 5xx, throttling,            StorageUnavailable
``NoSuchBucket``, refused or missing credentials
anything else the library raises                                S3Error (with the store's code and message)
==============================================================  =============================================

S3 has no "disk full": StorageFull is never raised. Exceptions that are not the libraries' own (chunkd's
errors, cancellation) pass through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import botocore.exceptions as boto_errors
from obstore import exceptions as obstore_errors

from chunkd.core.errors import ChunkdError, InvalidPath
from chunkd.core.errors import StorageUnavailable as CoreStorageUnavailable

__all__ = ["S3Error", "StorageUnavailable", "UploadVanished", "s3_errors", "translate"]


class S3Error(ChunkdError):
    """The S3 store refused a request."""

    code = "storage_error"


class StorageUnavailable(S3Error, CoreStorageUnavailable):
    """The S3 store cannot be used right now (unreachable, failing, throttling, or refusing chunkd's
    credentials); retry later. Every front end answers the core error with 503 and Retry-After."""

    code = "storage_unavailable"


class UploadVanished(S3Error):
    """A multipart upload was aborted while it was in use (garbage collection on another node)."""

    code = "storage_upload_vanished"


_MISSING_CODES = {"NoSuchKey", "NotFound", "404", "InvalidRange", "416"}
_BAD_KEY_CODES = {"KeyTooLongError", "InvalidObjectName"}
_UNAVAILABLE_CODES = {
    "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "SlowDown",
    "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed", "Throttling",
}
_STATUS = re.compile(r"status code: (\d{3})")


def translate(exc: BaseException, missing: type[Exception] = FileNotFoundError) -> BaseException:
    """The chunkd exception for ``exc`` (``exc`` itself when it is not a client library's)."""
    if isinstance(exc, boto_errors.ClientError):
        return _from_client_error(exc, missing)
    if isinstance(exc, boto_errors.HTTPClientError | boto_errors.ConnectionError | boto_errors.NoCredentialsError |
                  boto_errors.PartialCredentialsError | boto_errors.CredentialRetrievalError):
        return StorageUnavailable(f"the S3 store cannot be used: {exc}")
    if isinstance(exc, boto_errors.BotoCoreError):
        return S3Error(f"S3 request failed: {exc}")
    if isinstance(exc, FileNotFoundError | obstore_errors.NotFoundError):
        return exc if missing is FileNotFoundError and isinstance(exc, FileNotFoundError) else missing(str(exc))
    if isinstance(exc, obstore_errors.InvalidPathError):
        return InvalidPath(f"the S3 store refuses this key: {_first_line(exc)}")
    if isinstance(exc, obstore_errors.PermissionDeniedError | obstore_errors.UnauthenticatedError):
        return StorageUnavailable(f"the S3 store refused chunkd's credentials: {_first_line(exc)}")
    if isinstance(exc, obstore_errors.BaseError):
        return _from_obstore_message(exc, missing)
    if isinstance(exc, ValueError) and "Could not parse path" in str(exc):  # obstore's path parser
        return InvalidPath("the S3 store refuses this key")
    if isinstance(exc, OSError):  # obstore's file-like writer reports its failures as plain OSError
        return _from_obstore_message(exc, missing)
    if type(exc).__module__.split(".")[0] in ("botocore", "boto3", "s3transfer", "obstore"):
        return S3Error(f"S3 client error: {_first_line(exc)}")  # the libraries' odd ones out
    return exc


def _from_client_error(exc: boto_errors.ClientError, missing: type[Exception]) -> Exception:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = f"{code}: {error.get('Message', '')}".strip(": ")
    if code == "NoSuchUpload":
        return UploadVanished(message)
    if code in _MISSING_CODES:
        return missing(message)
    if code in _BAD_KEY_CODES:
        return InvalidPath(f"the S3 store refuses this key ({message})")
    if code in _UNAVAILABLE_CODES or status >= 500 or status in (401, 403):
        return StorageUnavailable(f"the S3 store cannot be used: {message}")
    return S3Error(f"S3 request failed: {message}")


def _from_obstore_message(exc: Exception, missing: type[Exception]) -> Exception:
    """obstore reports most failures as GenericError whose text carries the HTTP status, if any."""
    text = str(exc)
    found = _STATUS.search(text)
    status = int(found.group(1)) if found else 0
    if "NoSuchUpload" in text:
        return UploadVanished(_first_line(exc))
    if status in (404, 416) and "NoSuchBucket" not in text:
        return missing(_first_line(exc))
    if "KeyTooLong" in text:
        return InvalidPath("the S3 store refuses this key (too long)")
    if status == 0 or status >= 500 or status in (401, 403) or "NoSuchBucket" in text:
        # no status: the request never got an answer (refused, reset, timed out after the retries)
        return StorageUnavailable(f"the S3 store cannot be used: {_first_line(exc)}")
    return S3Error(f"S3 request failed: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0][:500]


@contextmanager
def s3_errors(missing: type[Exception] = FileNotFoundError) -> Iterator[None]:
    """Run a client-library call, translating what it raises (see the module docstring); ``missing`` is
    raised for an object that does not exist."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc, missing)
        if mapped is exc:
            raise
        raise mapped from exc
