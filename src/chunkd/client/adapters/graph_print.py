"""Microsoft Graph Universal Print upload sessions (``createUploadSession`` then ``uploadUrl``).

Target URL: the print document, ``https://graph/v1.0/print/printers/{p}/jobs/{j}/documents/{d}``. The
bearer token goes to ``createUploadSession`` only; the byte PUTs go to the opaque ``uploadUrl`` without
``Authorization`` (it carries its own token). Ranges may be sent in any order, at most 4 at once, each
below 10 MB; the service completes the document on the last range (201) and deletes the session.
"""

from __future__ import annotations

from urllib.parse import urljoin

import httpx

from chunkd.client._flow import Flow, Range, expect, send
from chunkd.client.adapters.base import Adapter, KiB, Target
from chunkd.client.errors import ConfigError, ServerError, SessionLost, VerificationError

SLICE = 320 * KiB  # the Graph SDKs' slice unit


def parse_ranges(values: object, size: int) -> list[Range]:
    """``["0-99", "200-"]`` (closed, open-ended or bare start) -> half-open ranges."""
    out: list[Range] = []
    for value in values if isinstance(values, list) else []:
        text = str(value)
        start, _, last = text.partition("-")
        end = int(last) + 1 if last.strip() else size
        out.append((int(start), min(end, size)))
    return [(s, e) for s, e in out if e > s]


class GraphPrintAdapter(Adapter):
    protocol = "print"
    default_chunk_size = 16 * SLICE  # 5 MiB
    max_chunk_size = 30 * SLICE  # 9.4 MiB: every request must stay below 10 MB
    max_parallel = 4  # the documented limit of concurrent range uploads

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        url = target.url.rstrip("/")
        if url.endswith("/createUploadSession"):
            url = url[: -len("/createUploadSession")]
        if "/documents/" not in url:
            raise ConfigError(f"{target.url} is not a print document URL (.../jobs/{{job}}/documents/{{doc}})")
        self.document_url = url
        self.upload_url = ""
        self.completed = False

    def open(self, saved: dict[str, object] | None) -> Flow[list[Range]]:
        if saved and isinstance(saved.get("upload_url"), str):
            self.upload_url = str(saved["upload_url"])
            try:
                return (yield from self.status())
            except SessionLost:
                pass
        body = {"properties": {"documentName": self.name, "contentType": self.target.content_type, "size": self.size}}
        r = yield from send(httpx.Request("POST", self.document_url + "/createUploadSession", json=body,
                                          headers=self.target.auth_headers()))
        expect(r, (200, 201), "createUploadSession")
        session = r.json()
        if not isinstance(session.get("uploadUrl"), str):
            raise ServerError(r.status_code, "createUploadSession returned no uploadUrl")
        self.upload_url = urljoin(self.document_url, session["uploadUrl"])
        self.completed = False
        self.state = {"upload_url": self.upload_url}
        return parse_ranges(session.get("nextExpectedRanges"), self.size)

    def status(self) -> Flow[list[Range]]:
        r = yield from send(httpx.Request("GET", self.upload_url, headers=self.target.headers))
        if r.status_code in (404, 410):
            if self.completed:
                return []
            raise SessionLost("the print upload session is gone")
        expect(r, (200,), "GET uploadUrl")
        return parse_ranges(r.json().get("nextExpectedRanges"), self.size)

    def send_chunk(self, start: int, end: int, data: bytes) -> Flow[None]:
        headers = {**self.target.headers, "Content-Range": f"bytes {start}-{end - 1}/{self.size}",
                   "Content-Type": "application/octet-stream"}
        r = yield from send(httpx.Request("PUT", self.upload_url, headers=headers, content=data))
        if r.status_code in (200, 201):
            self.completed = True
            return
        if r.status_code in (404, 410) and not self.completed:
            raise SessionLost("the print upload session is gone")
        expect(r, (202,), f"PUT range {start}-{end - 1}", resync=(416,))

    def finish(self) -> Flow[str]:
        if not self.completed and self.size > 0:
            missing = yield from self.status()
            if missing:
                raise ServerError(409, f"the session still expects {missing}", retryable=True)
        r = yield from send(httpx.Request("GET", self.document_url, headers=self.target.auth_headers()))
        if r.status_code == 200:
            size = r.json().get("size")
            if size is not None and int(size) != self.size:
                raise VerificationError(f"the print document has {size} bytes, the local file {self.size}")
        return self.document_url

    def cancel(self) -> Flow[None]:
        if self.upload_url:
            r = yield from send(httpx.Request("DELETE", self.upload_url, headers=self.target.headers))
            expect(r, (200, 204, 404), "DELETE uploadUrl")

    def download_request(self) -> httpx.Request | None:
        return httpx.Request("GET", self.document_url + "/$value", headers=self.target.auth_headers())
