"""tus 1.0 (creation, termination; concatenation when the server offers it).

Target URL: the creation endpoint (``http://host/files/``). Without concatenation the file is one upload
sent with sequential PATCHes (tus appends at an offset; there is nothing to parallelise). When ``OPTIONS``
lists ``concatenation`` and more than one chunk may be in flight, the file is cut into ``parallel``
partial uploads sent side by side (each one sequential), then joined with ``Upload-Concat: final``.
"""

from __future__ import annotations

import base64
from urllib.parse import urljoin

import httpx

from chunkd.client._flow import Flow, Range, expect, send
from chunkd.client.adapters.base import Adapter, MiB
from chunkd.client.errors import ServerError, SessionLost

VERSION = "1.0.0"
MIN_PART = 1 * MiB  # smaller files are not worth splitting into partial uploads


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


class TusAdapter(Adapter):
    protocol = "tus"
    default_chunk_size = 8 * MiB

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.parts: list[tuple[str, int, int]] = []  # (upload url, start, end) of the file
        self.final_url = ""

    def lane(self, start: int) -> object:
        for i, (_, a, b) in enumerate(self.parts):
            if a <= start < b:
                return i
        return 0

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Tus-Resumable": VERSION, **self.target.auth_headers(), **extra}

    def _metadata(self) -> str:
        return f"filename {_b64(self.name)},filetype {_b64(self.target.content_type)}"

    # -- flows ------------------------------------------------------------------------------------
    def open(self, saved: dict[str, object] | None) -> Flow[list[Range]]:
        parts = saved.get("parts") if saved else None
        if isinstance(parts, list) and parts:
            self.parts = [(str(u), int(a), int(b)) for u, a, b in parts]
            self.max_parallel = len(self.parts)
            try:
                return (yield from self.status())
            except SessionLost:
                self.parts = []
        n = 1
        if self.parallel > 1 and self.size >= 2 * MIN_PART:
            extensions = yield from self._extensions()
            if "concatenation" in extensions:
                n = min(self.parallel, self.size // MIN_PART)
        self.parts = []
        if n == 1:
            self.parts.append(((yield from self._create(self.size, partial=False)), 0, self.size))
        else:
            step = -(-self.size // n)
            for a in range(0, self.size, step):
                b = min(self.size, a + step)
                self.parts.append(((yield from self._create(b - a, partial=True)), a, b))
        self.max_parallel = len(self.parts)
        self.state = {"parts": [list(p) for p in self.parts]}
        return [(a, b) for _, a, b in self.parts if b > a]

    def _extensions(self) -> Flow[set[str]]:
        r = yield from send(httpx.Request("OPTIONS", self.target.url, headers=self._headers()))
        if r.status_code not in (200, 204):
            return set()
        return {e.strip() for e in r.headers.get("tus-extension", "").split(",") if e.strip()}

    def _create(self, length: int, *, partial: bool) -> Flow[str]:
        headers = self._headers(**{"Upload-Length": str(length)})
        if partial:
            headers["Upload-Concat"] = "partial"
        else:
            headers["Upload-Metadata"] = self._metadata()
        r = yield from send(httpx.Request("POST", self.target.url, headers=headers))
        expect(r, (200, 201), "creating the tus upload")
        location = r.headers.get("location")
        if not location:
            raise ServerError(r.status_code, "the tus server sent no Location for the new upload")
        return str(urljoin(self.target.url, location))

    def status(self) -> Flow[list[Range]]:
        missing: list[Range] = []
        for url, a, b in self.parts:
            r = yield from send(httpx.Request("HEAD", url, headers=self._headers()))
            if r.status_code in (404, 410):
                raise SessionLost(f"the tus server forgot {url}")
            expect(r, (200, 204), "HEAD of the tus upload")
            length = r.headers.get("upload-length")
            if length is not None and int(length) != b - a:
                raise SessionLost(f"{url} has another length")
            offset = a + int(r.headers.get("upload-offset", "0"))
            if offset < b:
                missing.append((offset, b))
        return missing

    def send_chunk(self, start: int, end: int, data: bytes) -> Flow[None]:
        url, a, _ = self.parts[int(self.lane(start))]  # type: ignore[call-overload]
        headers = self._headers(**{"Upload-Offset": str(start - a), "Content-Type": "application/offset+octet-stream"})
        r = yield from send(httpx.Request("PATCH", url, headers=headers, content=data))
        if r.status_code in (404, 410):
            raise SessionLost(f"the tus server forgot {url}")
        expect(r, (200, 204), f"PATCH at offset {start - a}", resync=(409, 423))
        got = r.headers.get("upload-offset")
        if got is not None and int(got) != end - a:
            raise ServerError(r.status_code, f"the server is at offset {got}, expected {end - a}", retryable=True)

    def finish(self) -> Flow[str]:
        if len(self.parts) == 1:
            self.final_url = self.parts[0][0]
        elif not self.final_url:
            concat = "final;" + " ".join(u for u, _, _ in self.parts)
            headers = self._headers(**{"Upload-Concat": concat, "Upload-Metadata": self._metadata()})
            r = yield from send(httpx.Request("POST", self.target.url, headers=headers))
            expect(r, (200, 201), "concatenating the partial uploads")
            self.final_url = urljoin(self.target.url, r.headers.get("location", ""))
        r = yield from send(httpx.Request("HEAD", self.final_url, headers=self._headers()))
        expect(r, (200, 204), "HEAD of the finished upload")
        offset = r.headers.get("upload-offset")
        if offset is not None and int(offset) != self.size:
            raise ServerError(r.status_code, f"the upload ends at offset {offset}, the file has {self.size} bytes",
                              retryable=True)
        return self.final_url

    def cancel(self) -> Flow[None]:
        for url, _, _ in self.parts:
            r = yield from send(httpx.Request("DELETE", url, headers=self._headers()))
            expect(r, (200, 204, 404, 410), "terminating the tus upload")

    def download_request(self) -> httpx.Request | None:
        url = self.final_url or (self.parts[0][0] if self.parts else "")
        return httpx.Request("GET", url, headers=self._headers()) if url else None
