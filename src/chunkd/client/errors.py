"""The client's one exception tree.

::

    UploadError                   base of everything chunkd.client raises
    ├── ConfigError               bad arguments: unknown protocol, chunk size outside the protocol's limits...
    ├── TransferError             the transfer could not be completed
    │   ├── ConnectionFailed      network error (connect, reset, timeout); retryable
    │   │   └── CannotConnect     no connection could be opened (refused, name unknown, connect timeout)
    │   ├── ServerError           an unexpected HTTP status; ``retryable`` for 408/429/5xx
    │   │   ├── AuthError         401 / 403: the credentials were refused
    │   │   └── NotFoundError     404 / 410 where the resource must exist
    │   ├── SessionLost           the server forgot the upload session (expired / deleted)
    │   └── RetriesExhausted      gave up after the configured retries without progress
    └── VerificationError         the stored bytes differ from the local file (size or sha256)

``httpx`` transport exceptions are mapped to :class:`ConnectionFailed` at one boundary (the drivers).
"""

from __future__ import annotations


class UploadError(Exception):
    """Base class of every error raised by :mod:`chunkd.client`."""


class ConfigError(UploadError):
    """The upload was asked for with arguments that cannot work."""


class TransferError(UploadError):
    """The transfer failed. ``retryable`` says whether trying again may help."""

    retryable = False
    retry_after: float | None = None


class ConnectionFailed(TransferError):
    """A network error: could not connect, connection reset, timed out. ``reason`` says which in a few words."""

    retryable = True

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class CannotConnect(ConnectionFailed):
    """No connection could be opened, so nothing of the request reached the server. Before the server has
    answered once in an upload, only ``RetryPolicy.connect_retries`` of these are retried (a server that is
    down fails fast); later they count like any other network error (a server restarting mid-upload)."""


class ServerError(TransferError):
    """The server answered with a status the flow did not expect."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None,
                 retryable: bool | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.body = message
        self.retry_after = retry_after
        self.retryable = retryable if retryable is not None else is_retryable_status(status)


class AuthError(ServerError):
    """401 or 403: the token is missing, expired or lacks a permission."""


class NotFoundError(ServerError):
    """404 / 410 for something that must exist (the target container, printer, document...)."""


class SessionLost(TransferError):
    """The server no longer knows the upload session; the upload restarts from scratch once."""

    retryable = True


class RetriesExhausted(TransferError):
    """Retried ``max_retries`` times in a row without the server receiving any new byte."""

    def __init__(self, message: str, last: BaseException | None = None) -> None:
        super().__init__(message)
        self.last = last


class VerificationError(UploadError):
    """The server's copy differs from the local file."""


def is_retryable_status(status: int) -> bool:
    """408, 429 and 5xx except 501/505 (not implemented / version not supported never heal)."""
    return status in (408, 429) or (status >= 500 and status not in (501, 505))
