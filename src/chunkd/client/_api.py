"""The public entry points: :class:`Uploader` (sync) and :class:`AsyncUploader`, plus target resolution."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from chunkd.client._async import arun_flow
from chunkd.client._flow import Flow, ProgressCallback, RetryCallback, UploadOptions, UploadResult, upload_flow
from chunkd.client._source import FileSource
from chunkd.client._state import StateStore
from chunkd.client._sync import run_flow
from chunkd.client.adapters import ADAPTERS, Adapter, Target
from chunkd.client.errors import ConfigError

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=15.0)


def detect_protocol(url: str) -> str:
    """Guess the protocol from a target URL; ConfigError when the URL alone is ambiguous."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{url} is not an http(s) URL")
    query = parse_qs(parts.query)
    if "/ImageStore" in parts.path:
        return "sf"
    if "sig" in query and ("sv" in query or "sr" in query):
        return "blob"
    if "/print/" in parts.path and "/documents/" in parts.path:
        return "print"
    if parts.path.rstrip("/").endswith("/files"):
        return "tus"
    raise ConfigError(f"cannot tell the protocol of {url}; pass protocol= / --protocol sf|print|blob|tus")


@dataclass(frozen=True)
class FileJob:
    """One local file and the name it gets on the server (relative path for directory uploads)."""

    path: Path
    name: str


def expand(paths: list[Path]) -> Iterator[FileJob]:
    """Files as given; directories recursively (sorted), named relative to the directory's parent."""
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for fname in sorted(filenames):
                    full = Path(dirpath) / fname
                    yield FileJob(full, full.relative_to(root.parent).as_posix())
        elif path.is_file():
            yield FileJob(path, path.name)
        else:
            raise ConfigError(f"{path} is not a file or directory")


def file_url(protocol: str, target: str, name: str, many: bool) -> str:
    """The per-file target URL: image store paths get the name appended for folders / several files."""
    if protocol == "sf" and (many or target.endswith("/")):
        return target.rstrip("/") + "/" + name
    if protocol == "print" and many:
        raise ConfigError("a print document takes exactly one file")
    return target


class _Base:
    def __init__(self, *, protocol: str | None = None, token: str | None = None,
                 options: UploadOptions | None = None, progress: ProgressCallback | None = None,
                 headers: dict[str, str] | None = None, on_retry: RetryCallback | None = None) -> None:
        if protocol is not None and protocol not in ADAPTERS:
            raise ConfigError(f"unknown protocol {protocol!r}; one of {', '.join(sorted(ADAPTERS))}")
        self.protocol = protocol
        self.token = token
        self.options = options or UploadOptions()
        self.progress = progress
        self.on_retry = on_retry  # hears of every wait before a retry (the library itself never prints)
        self.headers = headers or {}
        self.store = StateStore(self.options.state_dir) if self.options.resume else None

    def _prepare(self, path: Path, target: str, name: str | None) -> tuple[FileSource, Flow[UploadResult]]:
        protocol = self.protocol or detect_protocol(target)
        source = FileSource(Path(path))
        try:
            adapter: Adapter = ADAPTERS[protocol](Target(target, name or Path(path).name, source.size, self.token,
                                                         self.headers))
            return source, upload_flow(adapter, source, self.options, self.store, self.progress,
                                              self.on_retry)
        except BaseException:
            source.close()
            raise

    def _limits(self) -> httpx.Limits:
        n = max(4, self.options.parallel * 2)
        return httpx.Limits(max_connections=n, max_keepalive_connections=n)


class Uploader(_Base):
    """Synchronous uploads over an ``httpx.Client`` (yours, or one it creates and closes).

    ``upload(path, target_url)`` returns an :class:`UploadResult` or raises an
    :class:`~chunkd.client.errors.UploadError`.
    """

    def __init__(self, *, client: httpx.Client | None = None, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._own = client is None
        self.client = client or httpx.Client(timeout=DEFAULT_TIMEOUT, limits=self._limits())

    def upload(self, path: Path | str, target: str, *, name: str | None = None) -> UploadResult:
        source, flow = self._prepare(Path(path), target, name)
        with source:
            return run_flow(flow, self.client)

    def close(self) -> None:
        if self._own:
            self.client.close()

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncUploader(_Base):
    """The same uploads over an ``httpx.AsyncClient``."""

    def __init__(self, *, client: httpx.AsyncClient | None = None, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._own = client is None
        self.client = client or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, limits=self._limits())

    async def upload(self, path: Path | str, target: str, *, name: str | None = None) -> UploadResult:
        source, flow = self._prepare(Path(path), target, name)
        with source:
            return await arun_flow(flow, self.client)

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncUploader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def upload(path: Path | str, target: str, **kw: object) -> UploadResult:
    """One-shot convenience: ``chunkd.client.upload("big.bin", "http://host:19080/ImageStore/big.bin")``."""
    with Uploader(**kw) as uploader:  # type: ignore[arg-type]
        return uploader.upload(path, target)
