"""One error tree for the core, with stable codes.

::

    ChunkdError
    ├── InvalidInput            bad argument (path, range, length, metadata)
    │   ├── InvalidPath         key would leave its namespace, or is malformed
    │   ├── InvalidRange        range outside the session, start > end, ...
    │   ├── LengthMismatch      body length differs from the declared range / total differs
    │   ├── PathConflict        a file and a folder would have the same name
    │   └── ChecksumMismatch    body digest differs from the one the client declared
    ├── NotFound
    │   ├── SessionNotFound     unknown, deleted or expired session
    │   └── ObjectNotFound      no published object at that key
    ├── Conflict
    │   ├── SessionConflict     session id reused for another target / owner
    │   ├── OffsetMismatch      append offset differs from the session's offset
    │   ├── SessionIncomplete   commit while ranges are missing
    │   ├── AlreadyExists       target exists and the caller asked not to overwrite
    │   └── RangeBusy           another writer holds part of the range and did not finish in time
    │   └── GuardFailed         a resource the write depends on changed state (a container was sealed)
    ├── SessionGone             session expired or was deleted and is remembered (tombstone)
    ├── PermissionDenied        principal may not touch this session/object
    ├── TooLarge                over a configured maximum
    ├── WriteInterrupted        the writer lost its claim (taken over by a newer request)
    ├── PiecesMissing           recorded bytes are not in this server's byte store (commit refused)
    ├── StorageFull             the byte store or the metadata store has no space left (retry later)
    └── StorageUnavailable      the byte store cannot be reached or refused chunkd (outage, bad key)

Each front end maps these onto its own wire format in one table; anything else is a logged 500.
"""

from __future__ import annotations


class ChunkdError(Exception):
    code = "internal"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()


class InvalidInput(ChunkdError):
    """The request is malformed."""

    code = "invalid_input"


class InvalidPath(InvalidInput):
    """The path is not a valid relative path inside the store."""

    code = "invalid_path"


class InvalidRange(InvalidInput):
    """The byte range is not valid for this session."""

    code = "invalid_range"


class LengthMismatch(InvalidInput):
    """The body length does not match the declared range or total."""

    code = "length_mismatch"


class ChecksumMismatch(InvalidInput):
    """The body does not match its declared checksum."""

    code = "checksum_mismatch"


class PathConflict(InvalidInput):
    """A file and a folder would have the same name."""

    code = "path_conflict"


class NotFound(ChunkdError):
    """Not found."""

    code = "not_found"


class SessionNotFound(NotFound):
    """The upload session does not exist."""

    code = "session_not_found"


class ObjectNotFound(NotFound):
    """The file does not exist."""

    code = "object_not_found"


class Conflict(ChunkdError):
    """The request conflicts with the current state."""

    code = "conflict"


class SessionConflict(Conflict):
    """The session id is already used for another target or owner."""

    code = "session_conflict"


class OffsetMismatch(Conflict):
    """The offset does not match the session's current offset."""

    code = "offset_mismatch"

    def __init__(self, message: str = "", *, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


class SessionIncomplete(Conflict):
    """The session still has missing byte ranges."""

    code = "session_incomplete"


class AlreadyExists(Conflict):
    """The target already exists."""

    code = "already_exists"


class RangeBusy(Conflict):
    """Another request is still writing part of this range."""

    code = "range_busy"


class GuardFailed(Conflict):
    """A resource this write depends on is no longer in the required state."""

    code = "guard_failed"

    def __init__(self, message: str = "", *, state: str = "") -> None:
        super().__init__(message)
        self.state = state  # the resource's state now; "" when it is gone


class SessionGone(ChunkdError):
    """The upload session expired or was deleted."""

    code = "session_gone"


class PermissionDenied(ChunkdError):
    """The caller may not do this."""

    code = "permission_denied"


class TooLarge(ChunkdError):
    """The upload is larger than the configured maximum."""

    code = "too_large"


class WriteInterrupted(ChunkdError):
    """A newer request took over this upload."""

    code = "write_interrupted"


class PiecesMissing(ChunkdError):
    """Recorded bytes of the session are not in this server's byte store."""

    code = "pieces_missing"


class StorageFull(ChunkdError):
    """There is no space left to store this; retry once space is freed."""

    code = "storage_full"


class StorageUnavailable(ChunkdError):
    """The byte store or the metadata store cannot be reached or refused this server; retry later."""

    code = "storage_unavailable"

