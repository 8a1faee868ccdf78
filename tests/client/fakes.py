"""In-memory protocol servers as httpx.MockTransport handlers, for the client's flow tests.

Each fake keeps the bytes it accepted, counts request-body bytes, and can inject faults: a callable
``fault(request) -> httpx.Response | Exception | None`` consulted before the request is handled.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx

Fault = Callable[[httpx.Request], "httpx.Response | Exception | None"]


class FakeServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.body_bytes = 0
        self.requests: list[tuple[str, str]] = []
        self.fault: Fault | None = None
        self.lose: Callable[[httpx.Request], bool] | None = None  # handle, then drop the response
        self.in_flight = 0
        self.delay = 0.002
        self.max_in_flight = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append((request.method, request.url.path))
            fault = self.fault(request) if self.fault else None
        if isinstance(fault, Exception):
            raise fault
        if isinstance(fault, httpx.Response):
            return fault
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = request.read()
            if body:
                time.sleep(self.delay)  # lets concurrent requests overlap, as on a real network
            with self.lock:
                self.body_bytes += len(body)
                response = self.handle(request, body)
                if self.lose is not None and self.lose(request):
                    raise httpx.ReadError("connection lost after the server handled the request")
                return response
        finally:
            with self.lock:
                self.in_flight -= 1

    def handle(self, request: httpx.Request, body: bytes) -> httpx.Response:
        raise NotImplementedError

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def _missing(have: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    out, pos = [], 0
    for s, e in sorted(have):
        if s > pos:
            out.append((pos, s))
        pos = max(pos, e)
    if pos < size:
        out.append((pos, size))
    return out


class FakeImageStore(FakeServer):
    """Service Fabric upload sessions with the runtime's strictness (a re-sent chunk is a 400)."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, dict[str, object]] = {}
        self.files: dict[str, bytes] = {}

    def handle(self, request: httpx.Request, body: bytes) -> httpx.Response:
        path = request.url.path
        q = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        sid = q.get("session-id", "")
        if path.endswith("/$/UploadChunk"):
            name = path[len("/ImageStore/"): -len("/$/UploadChunk")]
            m = re.match(r"bytes (\d+)-(\d+)/(\d+)", request.headers["content-range"])
            assert m
            s, e, total = int(m[1]), int(m[2]) + 1, int(m[3])
            sess = self.sessions.setdefault(sid, {"path": name, "size": total, "data": bytearray(total), "have": []})
            have: list[tuple[int, int]] = sess["have"]  # type: ignore[assignment]
            if not any(a <= s and e <= b for a, b in _missing(have, total)):
                return httpx.Response(400, json={"Error": {"Code": "FABRIC_E_UPLOAD_SESSION_RANGE_NOT_SATISFIABLE"}})
            sess["data"][s:e] = body  # type: ignore[index]
            have.append((s, e))
            return httpx.Response(200)
        if path == "/ImageStore/$/GetUploadSession":
            sess = self.sessions.get(sid)
            if sess is None:
                return httpx.Response(204)
            exp = [{"StartPosition": str(a), "EndPosition": str(b - 1)}
                   for a, b in _missing(sess["have"], sess["size"])]  # type: ignore[arg-type]
            return httpx.Response(200, json={"UploadSessions": [{"SessionId": sid, "FileSize": str(sess["size"]),
                                                                 "ExpectedRanges": exp}]})
        if path == "/ImageStore/$/CommitUploadSession":
            sess = self.sessions[sid]
            if _missing(sess["have"], sess["size"]):  # type: ignore[arg-type]
                return httpx.Response(400, json={"Error": {"Code": "E_INVALIDARG"}})
            self.files[str(sess["path"])] = bytes(sess["data"])  # type: ignore[call-overload]
            return httpx.Response(200)
        if path == "/ImageStore/$/DeleteUploadSession":
            self.sessions.pop(sid, None)
            return httpx.Response(200)
        name = path[len("/ImageStore/"):]
        if request.method == "PUT":
            self.files[name] = body
            return httpx.Response(200)
        if request.method == "GET" and name.endswith("/$/Content"):
            return httpx.Response(200, content=self.files[name[: -len("/$/Content")]])
        if request.method == "GET" and name in self.files:
            return httpx.Response(200, json={"StoreFiles": [{"FileSize": str(len(self.files[name]))}]})
        return httpx.Response(404, json={"Error": {"Code": "FABRIC_E_FILE_NOT_FOUND"}})


class FakeTus(FakeServer):
    """tus core + creation (+ concatenation when ``concat``)."""

    def __init__(self, concat: bool = False) -> None:
        super().__init__()
        self.concat = concat
        self.uploads: dict[str, dict[str, object]] = {}

    def handle(self, request: httpx.Request, body: bytes) -> httpx.Response:
        h = {"Tus-Resumable": "1.0.0"}
        if request.method == "OPTIONS":
            ext = "creation,termination" + (",concatenation" if self.concat else "")
            return httpx.Response(204, headers={**h, "Tus-Extension": ext})
        if request.method == "POST":
            uid = uuid.uuid4().hex
            concat = request.headers.get("upload-concat", "")
            if concat.startswith("final;"):
                data = b"".join(bytes(self.uploads[u.rsplit("/", 1)[1]]["data"])  # type: ignore[call-overload]
                                for u in concat[6:].split())
                self.uploads[uid] = {"data": bytearray(data), "length": len(data)}
            else:
                self.uploads[uid] = {"data": bytearray(), "length": int(request.headers["upload-length"])}
            return httpx.Response(201, headers={**h, "Location": f"/files/{uid}"})
        uid = request.url.path.rsplit("/", 1)[1]
        up = self.uploads.get(uid)
        if up is None:
            return httpx.Response(404, headers=h)
        data: bytearray = up["data"]  # type: ignore[assignment]
        if request.method == "HEAD":
            return httpx.Response(200, headers={**h, "Upload-Offset": str(len(data)),
                                                "Upload-Length": str(up["length"])})
        if request.method == "PATCH":
            if int(request.headers["upload-offset"]) != len(data):
                return httpx.Response(409, headers=h)
            data += body
            return httpx.Response(204, headers={**h, "Upload-Offset": str(len(data))})
        if request.method == "GET":
            return httpx.Response(200, content=bytes(data))
        return httpx.Response(405)


class FakePrint(FakeServer):
    """createUploadSession + uploadUrl; 202 with nextExpectedRanges, 201 on the last range, 416 on overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, dict[str, object]] = {}
        self.documents: dict[str, bytes] = {}
        self.auth_on_upload_url = 0

    def handle(self, request: httpx.Request, body: bytes) -> httpx.Response:
        path = request.url.path
        if path.endswith("/createUploadSession"):
            import json

            props = json.loads(body)["properties"]
            sid = uuid.uuid4().hex
            doc = path[: -len("/createUploadSession")]
            self.sessions[sid] = {"doc": doc, "size": props["size"], "data": bytearray(props["size"]), "have": []}
            return httpx.Response(200, json={"uploadUrl": f"/upload/{sid}?token=t",
                                             "nextExpectedRanges": [f"0-{props['size'] - 1}"]})
        if path.startswith("/upload/"):
            if "authorization" in request.headers:
                self.auth_on_upload_url += 1
            sid = path.rsplit("/", 1)[1]
            sess = self.sessions.get(sid)
            if sess is None:
                return httpx.Response(404, json={"error": {"code": "itemNotFound", "message": "gone"}})
            size: int = sess["size"]  # type: ignore[assignment]
            have: list[tuple[int, int]] = sess["have"]  # type: ignore[assignment]
            ranges = [f"{a}-{b - 1}" for a, b in _missing(have, size)]
            if request.method == "GET":
                return httpx.Response(200, json={"nextExpectedRanges": ranges})
            m = re.match(r"bytes (\d+)-(\d+)/(\d+)", request.headers["content-range"])
            assert m
            s, e = int(m[1]), int(m[2]) + 1
            assert e - s < 10_000_000
            if not any(a <= s and e <= b for a, b in _missing(have, size)):
                return httpx.Response(416, json={"error": {"code": "invalidRange", "message": "overlap"}})
            sess["data"][s:e] = body  # type: ignore[index]
            have.append((s, e))
            left = _missing(have, size)
            if not left:
                self.documents[str(sess["doc"])] = bytes(sess["data"])  # type: ignore[call-overload]
                del self.sessions[sid]
                return httpx.Response(201, json={"id": "d", "size": size})
            return httpx.Response(202, json={"nextExpectedRanges": [f"{a}-{b - 1}" for a, b in left]})
        if path in self.documents:
            return httpx.Response(200, json={"id": "d", "size": len(self.documents[path])})
        return httpx.Response(404)


class FakeBlob(FakeServer):
    """Put Blob, Put Block, Put Block List, Get Block List (uncommitted), HEAD, GET; checks the SAS is present."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[str, dict[str, bytes]] = {}
        self.block_bytes = 0  # bytes of Put Block / Put Blob bodies
        self.blobs: dict[str, bytes] = {}

    def handle(self, request: httpx.Request, body: bytes) -> httpx.Response:
        q = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        if q.get("sig") != "s3cret":
            return httpx.Response(403, headers={"x-ms-error-code": "AuthenticationFailed"})
        name = request.url.path
        comp = q.get("comp")
        if request.method == "PUT" and comp == "block":
            block_id = q["blockid"]
            base64.b64decode(block_id)
            self.blocks.setdefault(name, {})[block_id] = body
            self.block_bytes += len(body)
            return httpx.Response(201)
        if request.method == "PUT" and comp == "blocklist":
            ids = [el.text or "" for el in ET.fromstring(body)]
            staged = self.blocks.pop(name, {})
            self.blobs[name] = b"".join(staged[i] for i in ids)
            return httpx.Response(201)
        if request.method == "PUT":
            assert request.headers["x-ms-blob-type"] == "BlockBlob"
            self.blobs[name] = body
            return httpx.Response(201)
        if request.method == "GET" and comp == "blocklist":
            if name not in self.blocks:
                return httpx.Response(404, headers={"x-ms-error-code": "BlobNotFound"})
            items = "".join(f"<Block><Name>{i}</Name><Size>{len(b)}</Size></Block>"
                            for i, b in self.blocks[name].items())
            return httpx.Response(200, content=f"<BlockList><UncommittedBlocks>{items}</UncommittedBlocks>"
                                               f"</BlockList>".encode())
        if name not in self.blobs:
            return httpx.Response(404, headers={"x-ms-error-code": "BlobNotFound"})
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(self.blobs[name]))})
        return httpx.Response(200, content=self.blobs[name])
