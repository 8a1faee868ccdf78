"""What a protocol adapter provides: "create / send range / ask what is missing / commit / cancel".

Every method that talks to the server is a sans-I/O flow (see :mod:`chunkd.client._flow`). Adapters keep
the little they must remember across runs in ``self.state`` (a JSON-able dict saved by the flow): the
server-side session id or URL. They never trust it for *what* was received — ``open`` and ``status`` ask.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field

import httpx

from chunkd.client._flow import Flow, Range
from chunkd.client.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class Target:
    """Where one file goes: the URL as given (already per-file where the protocol needs it), the name
    the server should know the file by, and extra request headers (e.g. ``Authorization``)."""

    url: str
    name: str
    size: int
    token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    def auth_headers(self) -> dict[str, str]:
        out = dict(self.headers)
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        return out


class Adapter:
    """Base class; subclasses set the class attributes and implement the flows."""

    protocol = ""
    default_chunk_size = 8 * MiB
    min_chunk_size = 1
    max_chunk_size: int | None = None
    max_parallel = 64

    def __init__(self, target: Target) -> None:
        self.target = target
        self.size = target.size
        self.name = target.name
        self.chunk_size = self.default_chunk_size
        self.parallel = 1  # what the caller asked for; set by the flow before open()
        self.state: dict[str, object] = {}

    # -- configuration ----------------------------------------------------------------------------
    def identity(self) -> str:
        """What identifies the target across runs (part of the resume key)."""
        return self.target.url

    def clamp_chunk_size(self, wanted: int | None) -> int:
        size = self.default_chunk_size if wanted is None else wanted
        if size < self.min_chunk_size or (self.max_chunk_size is not None and size > self.max_chunk_size):
            limit = (f"{self.min_chunk_size}..{self.max_chunk_size}" if self.max_chunk_size
                     else f">= {self.min_chunk_size}")
            raise ConfigError(f"--chunk-size {size} is outside {self.protocol}'s limits ({limit} bytes)")
        return size

    def lane(self, start: int) -> object:
        """Chunks with the same non-None lane are sent one after another (sequential protocols)."""
        return None

    # -- flows ------------------------------------------------------------------------------------
    def open(self, saved: dict[str, object] | None) -> Flow[list[Range]]:
        """Resume the upload ``saved`` describes if the server still has it, else create a new one;
        returns the missing ranges."""
        raise NotImplementedError

    def status(self) -> Flow[list[Range]]:
        """Ask the server which ranges are still missing; SessionLost if it forgot the upload."""
        raise NotImplementedError

    def send_chunk(self, start: int, end: int, data: bytes) -> Flow[None]:
        raise NotImplementedError

    def finish(self) -> Flow[str]:
        """Commit / complete; checks the size the server reports; returns the file's location."""
        raise NotImplementedError

    def cancel(self) -> Flow[None]:
        raise NotImplementedError

    def download_request(self) -> httpx.Request | None:
        """A GET of the stored bytes, for ``--verify``; None when the protocol has none."""
        return None
