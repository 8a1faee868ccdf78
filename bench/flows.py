"""Upload flows of each protocol, all on the one driver (bench/driver.py).

Every flow takes a connection factory (``peer.conn``) and a :class:`Source` and performs one complete
upload, raising on any unexpected status so a failed upload can never count as a fast one.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from bench.driver import Conn, FileBody

ConnFactory = Callable[[], Conn]
TUS = {"Tus-Resumable": "1.0.0"}
SF_Q = "api-version=6.0"


@dataclass
class Source:
    """A body file opened once; ranges of it are sent with sendfile."""

    path: Path
    size: int
    fd: int = -1

    def open(self) -> Source:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDONLY)
        return self

    def body(self, offset: int, length: int) -> FileBody:
        return FileBody(self.fd, offset, length)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)


def make_source(path: Path, size: int) -> Source:
    """A file of ``size`` random bytes (reused when it already has that size)."""
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as f:
            block = os.urandom(8 << 20)
            left = size
            while left:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
    return Source(path, size).open()


def pieces(offset: int, length: int, chunk: int) -> list[tuple[int, int]]:
    """``[offset, offset+length)`` cut into ``(start, size)`` pieces of at most ``chunk`` bytes."""
    return [(s, min(chunk, offset + length - s)) for s in range(offset, offset + length, chunk)] or [(offset, 0)]


def parallel(fns: list[Callable[[], object]]) -> None:
    """Run ``fns`` on threads; re-raise the first failure."""
    errors: list[BaseException] = []

    def run(fn: Callable[[], object]) -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,), daemon=True) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# -- nginx (WebDAV PUT) ---------------------------------------------------------------------------
def nginx_put(conn: Conn, src: Source, name: str, offset: int = 0, length: int | None = None) -> None:
    n = src.size - offset if length is None else length
    conn.request("PUT", f"/up/{name}", {}, src.body(offset, n), expect=(201, 204))


# -- Service Fabric UploadChunk -------------------------------------------------------------------
def sf_chunks(conn: Conn, src: Source, key: str, sid: str, offset: int, length: int, chunk: int,
              total: int | None = None) -> None:
    total = src.size if total is None else total
    for start, size in pieces(offset, length, chunk):
        last = start + size - 1 if size else 0
        conn.request("PUT", f"/ImageStore/{key}/$/UploadChunk?{SF_Q}&session-id={sid}",
                     {"Content-Range": f"bytes {start}-{last}/{total}"}, src.body(start, size), expect=(200,))


def sf_commit(conn: Conn, sid: str) -> None:
    conn.request("POST", f"/ImageStore/$/CommitUploadSession?{SF_Q}&session-id={sid}", {}, b"", expect=(200,))


def sf_upload(conn: Conn, src: Source, key: str, chunk: int) -> None:
    sid = str(uuid.uuid4())
    sf_chunks(conn, src, key, sid, 0, src.size, chunk)
    sf_commit(conn, sid)


def sf_parallel(factory: ConnFactory, src: Source, key: str, chunk: int, streams: int) -> None:
    """``streams`` connections each upload one contiguous share of the file into ONE session."""
    sid = str(uuid.uuid4())
    share = -(-src.size // streams)
    conns = [factory() for _ in range(streams)]
    parallel([lambda i=i, c=c: sf_chunks(c, src, key, sid, i * share, min(share, src.size - i * share), chunk)
              for i, c in enumerate(conns)])
    sf_commit(conns[0], sid)
    for c in conns:
        c.close()


# -- tus ------------------------------------------------------------------------------------------
def _path_of(location: str) -> str:
    return urlsplit(location).path


def tus_create(conn: Conn, length: int, concat: str = "") -> str:
    headers = {**TUS, "Upload-Length": str(length)}
    if concat:
        headers["Upload-Concat"] = concat
    resp = conn.request("POST", "/files/", headers, b"", expect=(201,))
    return _path_of(resp.header("location"))


def tus_patch(conn: Conn, path: str, src: Source, offset: int, length: int, chunk: int, at: int = 0) -> None:
    """PATCH ``src[offset:offset+length]`` to ``path`` (whose upload offset is ``at``) in ``chunk`` pieces."""
    for start, size in pieces(offset, length, chunk):
        headers = {**TUS, "Upload-Offset": str(at + start - offset),
                   "Content-Type": "application/offset+octet-stream"}
        conn.request("PATCH", path, headers, src.body(start, size), expect=(204,))


def tus_upload(conn: Conn, src: Source, chunk: int) -> str:
    path = tus_create(conn, src.size)
    tus_patch(conn, path, src, 0, src.size, chunk)
    return path


def tus_concat(factory: ConnFactory, src: Source, chunk: int, streams: int) -> None:
    """``streams`` partial uploads PATCHed in parallel, then one final upload concatenating them."""
    share = -(-src.size // streams)
    conns = [factory() for _ in range(streams)]
    shares = [(i * share, min(share, src.size - i * share)) for i in range(streams)]
    paths = [tus_create(c, n, "partial") for c, (_, n) in zip(conns, shares, strict=True)]
    parallel([lambda c=c, p=p, o=o, n=n: tus_patch(c, p, src, o, n, chunk)
              for c, p, (o, n) in zip(conns, paths, shares, strict=True)])
    conns[0].request("POST", "/files/", {**TUS, "Upload-Concat": "final;" + " ".join(paths)}, b"", expect=(201,))
    for c in conns:
        c.close()


def tus_available(conn: Conn) -> str:
    """"" when the server speaks tus at /files/, else why not."""
    try:
        resp = conn.request("OPTIONS", "/files/", TUS)
    except OSError as exc:
        return f"no answer ({exc})"
    if resp.status not in (200, 204) or not resp.header("tus-version"):
        return f"no tus endpoint at /files/ yet (OPTIONS answered {resp.status})"
    return ""


# -- Microsoft Graph Universal Print: createUploadSession -> uploadUrl --------------------------------
def graph_printer(conn: Conn) -> str:
    """Register a printer for the benchmark's jobs; its id."""
    resp = conn.request("POST", "/v1.0/print/printers", {"Content-Type": "application/json"},
                        json.dumps({"displayName": "bench"}).encode(), expect=(200, 201))
    return str(json.loads(resp.body)["id"])


def graph_upload(conn: Conn, printer: str, src: Source, chunk: int) -> None:
    """A job, its document's upload session, then the file PUT to the uploadUrl in ``chunk`` pieces."""
    js = {"Content-Type": "application/json"}
    job = json.loads(conn.request("POST", f"/v1.0/print/printers/{printer}/jobs", js, b"{}", expect=(200, 201)).body)
    doc = f"/v1.0/print/printers/{printer}/jobs/{job['id']}/documents/{job['documents'][0]['id']}"
    props = {"properties": {"documentName": "bench.pdf", "contentType": "application/pdf", "size": src.size}}
    session = json.loads(conn.request("POST", doc + "/createUploadSession", js, json.dumps(props).encode(),
                                      expect=(200, 201)).body)
    target = urlsplit(session["uploadUrl"])
    path = f"{target.path}?{target.query}"
    for start, size in pieces(0, src.size, chunk):
        last = start + size >= src.size
        conn.request("PUT", path, {"Content-Range": f"bytes {start}-{start + size - 1}/{src.size}",
                                   "Content-Type": "application/octet-stream"}, src.body(start, size),
                     expect=(200, 201) if last else (200, 202))


# -- Microsoft Graph Industry Data: getUploadSession -> container SAS -> Put Block / Put Block List -----
INDUSTRY = "/beta/external/industryData/dataConnectors"
BLOB_HEADERS = {"x-ms-version": "2025-01-05"}


def blob_session(conn: Conn) -> str:
    """A data connector's upload session: its container SAS URL as ``path?query``."""
    js = {"Content-Type": "application/json"}
    body = {"@odata.type": "#microsoft.graph.industryData.azureDataLakeConnector", "displayName": "bench"}
    connector = json.loads(conn.request("POST", INDUSTRY, js, json.dumps(body).encode(), expect=(200, 201)).body)
    session = json.loads(conn.request(
        "GET", f"{INDUSTRY}/{connector['id']}/microsoft.graph.industryData.azureDataLakeConnector/getUploadSession",
        expect=(200,)).body)
    target = urlsplit(session["sessionUrl"])
    return f"{target.path}?{target.query}"


def blob_upload(conn: Conn, sas: str, src: Source, chunk: int) -> None:
    """What azure-storage-blob's upload_blob sends for a large file (one connection): Put Block per
    ``chunk``, then Put Block List."""
    path, query = sas.split("?", 1)
    blob = f"{path}/{uuid.uuid4().hex}.bin?{query}"
    ids = []
    for i, (start, size) in enumerate(pieces(0, src.size, chunk)):
        block = base64.b64encode(f"{i:08d}".encode()).decode()
        ids.append(block)
        conn.request("PUT", f"{blob}&comp=block&blockid={quote(block, safe='')}", BLOB_HEADERS,
                     src.body(start, size), expect=(201,))
    xml = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(
        f"<Latest>{b}</Latest>" for b in ids) + "</BlockList>"
    conn.request("PUT", f"{blob}&comp=blocklist", {**BLOB_HEADERS, "Content-Type": "application/xml"},
                 xml.encode(), expect=(201,))


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
