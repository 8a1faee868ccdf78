"""Azure Blob container SAS URL (the Industry Data ``getUploadSession`` target): Put Block / Put Block List.

Target URL: the container URL with its SAS query; the blob name is the file name (relative path for
directory uploads). Blocks lie on a fixed grid of ``chunk_size``; a block's id encodes its offset, so
``Get Block List`` (uncommitted) tells exactly which grid cells the service already has. Files no larger
than one chunk are a single Put Blob.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from email.utils import formatdate
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from chunkd.client._flow import Flow, Range, expect, send
from chunkd.client.adapters.base import Adapter, MiB, Target
from chunkd.client.errors import ConfigError, VerificationError

X_MS_VERSION = "2025-11-05"


def block_id(offset: int) -> str:
    return base64.b64encode(f"chunkd-{offset:024d}".encode()).decode()


def block_offset(block: str) -> int | None:
    try:
        text = base64.b64decode(block).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return int(text[7:]) if text.startswith("chunkd-") and text[7:].isascii() and text[7:].isdigit() else None


class BlobAdapter(Adapter):
    protocol = "blob"
    default_chunk_size = 8 * MiB
    max_chunk_size = 4000 * MiB
    max_parallel = 64

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        parts = urlsplit(target.url)
        if not parts.query:
            raise ConfigError(f"{target.url} has no SAS query (?sv=...&sig=...)")
        path = parts.path.rstrip("/") + "/" + quote(target.name, safe="/")
        self.blob = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self.sas = parts.query

    def identity(self) -> str:
        return self.blob  # not the SAS: a fresh SAS for the same blob resumes the same upload

    @property
    def single(self) -> bool:
        return self.size <= self.chunk_size

    def _request(self, method: str, query: str = "", **kw: object) -> httpx.Request:
        headers = {"x-ms-version": X_MS_VERSION, "x-ms-date": formatdate(usegmt=True), **self.target.headers}
        headers.update(kw.pop("headers", {}))  # type: ignore[call-overload]
        url = f"{self.blob}?{self.sas}" + (f"&{query}" if query else "")
        return httpx.Request(method, url, headers=headers, **kw)  # type: ignore[arg-type]

    def _grid(self) -> list[Range]:
        return [(a, min(self.size, a + self.chunk_size)) for a in range(0, self.size, self.chunk_size)]

    def open(self, saved: dict[str, object] | None) -> Flow[list[Range]]:
        return (yield from self.status())

    def status(self) -> Flow[list[Range]]:
        if self.single:
            return [(0, self.size)] if self.size else []
        r = yield from send(self._request("GET", "comp=blocklist&blocklisttype=uncommitted"))
        if r.status_code == 404:
            return self._grid()
        expect(r, (200,), "Get Block List")
        have: set[Range] = set()
        # the block list comes from the storage service the caller chose to trust with the file
        for block in ET.fromstring(r.content).iter("Block"):  # noqa: S314
            offset = block_offset(block.findtext("Name") or "")
            size = int(block.findtext("Size") or "-1")
            if offset is not None:
                have.add((offset, offset + size))
        return [cell for cell in self._grid() if cell not in have]

    def send_chunk(self, start: int, end: int, data: bytes) -> Flow[None]:
        if self.single:
            r = yield from send(self._put_blob(data))
            expect(r, (201,), "Put Blob")
            return
        r = yield from send(self._request("PUT", f"comp=block&blockid={quote(block_id(start), safe='')}",
                                          content=data))
        expect(r, (201,), f"Put Block at {start}")

    def _put_blob(self, data: bytes) -> httpx.Request:
        return self._request("PUT", content=data, headers={
            "x-ms-blob-type": "BlockBlob", "x-ms-blob-content-type": self.target.content_type})

    def finish(self) -> Flow[str]:
        if self.size == 0:
            r = yield from send(self._put_blob(b""))
            expect(r, (201,), "Put Blob")
        elif not self.single:
            ids = "".join(f"<Latest>{block_id(a)}</Latest>" for a, _ in self._grid())
            body = f"<?xml version='1.0' encoding='utf-8'?>\n<BlockList>{ids}</BlockList>".encode()
            r = yield from send(self._request("PUT", "comp=blocklist", content=body, headers={
                "Content-Type": "application/xml", "x-ms-blob-content-type": self.target.content_type}))
            expect(r, (201,), "Put Block List")
        r = yield from send(self._request("HEAD"))
        expect(r, (200,), "Get Blob Properties")
        length = r.headers.get("content-length")
        if length is not None and int(length) != self.size:
            raise VerificationError(f"the blob has {length} bytes, the local file {self.size}")
        return self.blob

    def cancel(self) -> Flow[None]:
        return
        yield

    def download_request(self) -> httpx.Request | None:
        return self._request("GET")
