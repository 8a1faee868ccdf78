"""What the engine reports about its own work, for metrics: a port the core owns and the server implements
(:mod:`chunkd.server.metrics` turns it into Prometheus series).

The engine calls these synchronously on its hot path, once or twice per chunk: an implementation must be
cheap, must not block and must not raise, and must be thread-safe: the one-hop path for small chunks
(:mod:`chunkd.core.small_writes`) reports flushes from a worker thread. The base class does nothing, so an
engine without metrics pays one method call per report.
"""

from __future__ import annotations

from chunkd.core.errors import PiecesMissing, StorageFull, StorageUnavailable

__all__ = ["STORAGE_ERRORS", "EngineStats"]

# what counts as a storage error: the byte store failed, not the client (OSError: a local disk's own error)
STORAGE_ERRORS: tuple[type[BaseException], ...] = (StorageFull, StorageUnavailable, PiecesMissing, OSError)


class EngineStats:
    """Receives the engine's reports. ``family`` is a session family (a small fixed set, never an id)."""

    def write(self, family: str, new_bytes: int, duplicate_bytes: int, seconds: float) -> None:
        """A chunk was written and recorded: ``new_bytes`` were not received before, ``duplicate_bytes`` of
        the request body were (read and dropped); ``seconds`` from the engine's call to its return."""

    def flush(self, seconds: float) -> None:
        """One piece was finished in the byte store (written out, and fdatasync'd when durable)."""

    def takeover(self, kind: str, count: int = 1) -> None:
        """``kind`` ``write``: claims whose lease ended were dropped by a newer writer of the session;
        ``commit``: a commit that died with its process was finished by another request."""

    def storage_error(self, operation: str) -> None:
        """The byte store failed during ``operation`` (``write``, ``commit``)."""
