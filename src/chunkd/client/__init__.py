"""chunkd's upload client: parallel, resumable, verified uploads over every API family chunkd speaks.

::

    from chunkd.client import Uploader, UploadOptions

    with Uploader(token=token, options=UploadOptions(parallel=4)) as up:
        result = up.upload("big.iso", "http://127.0.0.1:19080/ImageStore/isos/big.iso")
        print(result.sha256, result.sent)

One sans-I/O flow (``_flow.py``) is driven by a sync driver (``httpx.Client``, threads) and an async
driver (``httpx.AsyncClient``); per-protocol adapters live in :mod:`chunkd.client.adapters`. The library
never prints; pass ``progress=`` for :class:`Progress` callbacks and ``on_retry=`` for a
:class:`RetryNotice` before every retry. Errors: :mod:`chunkd.client.errors`.
"""

from chunkd.client._api import AsyncUploader, FileJob, Uploader, detect_protocol, expand, file_url, upload
from chunkd.client._flow import (
    Progress,
    ProgressCallback,
    RetryCallback,
    RetryNotice,
    RetryPolicy,
    UploadOptions,
    UploadResult,
)
from chunkd.client.errors import (
    AuthError,
    CannotConnect,
    ConfigError,
    ConnectionFailed,
    NotFoundError,
    RetriesExhausted,
    ServerError,
    SessionLost,
    TransferError,
    UploadError,
    VerificationError,
)

__all__ = [
    "AsyncUploader",
    "AuthError",
    "CannotConnect",
    "ConfigError",
    "ConnectionFailed",
    "FileJob",
    "NotFoundError",
    "Progress",
    "ProgressCallback",
    "RetriesExhausted",
    "RetryCallback",
    "RetryNotice",
    "RetryPolicy",
    "ServerError",
    "SessionLost",
    "TransferError",
    "UploadError",
    "UploadOptions",
    "UploadResult",
    "Uploader",
    "VerificationError",
    "detect_protocol",
    "expand",
    "file_url",
    "upload",
]
