"""A real full disk under a real server process: a small tmpfs is the data directory (or only the part of
it that fills), a ballast file fills it, and every family must refuse cleanly -- 507 or 503 with
``Retry-After`` in its own error format, never a 500 --, keep what the session had received, and accept the
same chunk again once the ballast is deleted, ending in a committed object with the right bytes.

Three ways to be full:

* everything on one filesystem (the usual deployment): the claim, the first metadata write of a chunk,
  already fails, and so do creating a session and committing one (it stays open);
* the byte store's disk fills while a body streams (metadata elsewhere): ``ENOSPC`` from ``pwrite``; on
  that disk also what needs space to publish: Copy, whole-file PUT, Put Blob, composites (Put Block List,
  tus concatenation: a manifest), creation-with-upload -- with the sweep running meanwhile;
* the metadata store's disk fills while a body streams (bytes elsewhere): the piece is written but its
  ``record`` fails with SQLite's "database or disk is full"; nothing is recorded.

Mounting needs root (tests run as root here); elsewhere the tests skip.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.slow
TUS = {"Tus-Resumable": "1.0.0"}
V = {"x-ms-version": "2025-11-05"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}
SIZE = 200_000
HALF = 100_000


def _tmpfs(path: Path, request: pytest.FixtureRequest, size: str = "8m") -> Path:
    """Mount a small tmpfs at ``path`` (unmounted by a finalizer), or skip when mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); needs root")
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(path)], check=False))
    return path


def _fill(folder: Path) -> Path:
    """Write a ballast file until the filesystem has no byte left."""
    ballast = folder / "ballast"
    with open(ballast, "ab", buffering=0) as f:
        for block in (1 << 16, 512, 1):
            try:
                while True:
                    f.write(b"\0" * block)
            except OSError as exc:
                assert exc.errno == 28, exc  # ENOSPC
    return ballast


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _no_500(server: ServerProcess) -> None:
    log = server.log()
    assert '" 500' not in log and "Traceback" not in log, log[-4000:]


def _refused(r: httpx.Response) -> None:
    assert r.status_code in (503, 507), (r.status_code, r.text)
    assert int(r.headers["retry-after"]) >= 1


def _tus_refused(r: httpx.Response) -> None:
    _refused(r)
    assert r.headers["tus-resumable"] == "1.0.0" and r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith("ERR_INSUFFICIENT_STORAGE")


def _sf_refused(r: httpx.Response) -> str:
    _refused(r)
    err = r.json()["Error"]
    assert err["Code"] == "FABRIC_E_SERVICE_TOO_BUSY" and "full" in err["Message"]
    return str(err["Message"])


def _graph_refused(r: httpx.Response) -> None:
    _refused(r)
    err = r.json()["error"]
    assert err["code"] == "insufficientStorage" and "full" in err["message"]


def _blob_refused(r: httpx.Response) -> None:
    _refused(r)
    assert r.headers["x-ms-error-code"] == "ServerBusy"
    assert "<Error><Code>ServerBusy</Code>" in r.text and "storage space" in r.text
    assert r.headers["retry-after"] == "30"  # a disk is freed by an operator, not within a second


class Uploads:
    """One upload of ``SIZE`` bytes in each family, with the first half received before the disk fills."""

    def __init__(self, server: ServerProcess, request: pytest.FixtureRequest) -> None:
        self.url = server.url
        self.c = httpx.Client(base_url=server.url, timeout=60)
        request.addfinalizer(self.c.close)
        self.data = {f: os.urandom(SIZE) for f in ("tus", "sf", "graph", "blob")}
        r = self.c.post("/files/", headers={**TUS, "Upload-Length": str(SIZE)})
        assert r.status_code == 201, r.text
        self.tus = "/files/" + r.headers["location"].rsplit("/", 1)[1]
        self.sid = str(uuid.uuid4())
        self.sf_chunk = f"/ImageStore/full/f.bin/$/UploadChunk?api-version=6.0&session-id={self.sid}"
        printer = self.c.post("/v1.0/print/printers", json={"displayName": "p"}).json()["id"]
        self.docs = []
        for _ in range(2):  # the second document's session is created on the full disk
            job = self.c.post(f"/v1.0/print/printers/{printer}/jobs", json={"configuration": {}}).json()
            self.docs.append(f"/v1.0/print/printers/{printer}/jobs/{job['id']}/documents/{job['documents'][0]['id']}")
        r = self.graph_session(self.docs[0])
        assert r.status_code == 200, r.text
        self.graph = r.json()["uploadUrl"]
        conn = self.c.post("/beta/external/industryData/dataConnectors", json={
            "@odata.type": "#microsoft.graph.industryData.azureDataLakeConnector", "displayName": "x"}).json()["id"]
        url = self.c.get(f"/beta/external/industryData/dataConnectors/{conn}/"
                         "microsoft.graph.industryData.azureDataLakeConnector/getUploadSession").json()["sessionUrl"]
        self.container, _, self.sas = url.partition("?")
        self.ids = [base64.b64encode(f"b{i:04d}".encode()).decode() for i in range(2)]

    def graph_session(self, doc: str) -> httpx.Response:
        return self.c.post(doc + "/createUploadSession", json={"properties": {
            "documentName": "d.pdf", "contentType": "application/pdf", "size": SIZE}})

    # -- the chunks --------------------------------------------------------------------------------
    def tus_patch(self, a: int, b: int) -> httpx.Response:
        return self.c.patch(self.tus, content=self.data["tus"][a:b], headers={**OCTETS, "Upload-Offset": str(a)})

    def sf_put(self, a: int, b: int) -> httpx.Response:
        return self.c.put(self.sf_chunk, content=self.data["sf"][a:b],
                          headers={"Content-Range": f"bytes {a}-{b - 1}/{SIZE}"})

    def graph_put(self, a: int, b: int) -> httpx.Response:
        return httpx.put(self.graph, content=self.data["graph"][a:b], timeout=60,
                         headers={"Content-Range": f"bytes {a}-{b - 1}/{SIZE}"})

    def blob_put(self, i: int) -> httpx.Response:
        block = self.data["blob"][i * HALF:(i + 1) * HALF]
        return httpx.put(f"{self.container}/f.csv?{self.sas}&comp=block&blockid={self.ids[i]}", content=block,
                         headers=V, timeout=60)

    def first_halves(self) -> None:
        assert self.tus_patch(0, HALF).status_code == 204
        assert self.sf_put(0, HALF).status_code == 200
        assert self.graph_put(0, HALF).status_code == 202
        assert self.blob_put(0).status_code == 201

    # -- what each session says it has -------------------------------------------------------------
    def received(self) -> dict[str, object]:
        sf = self.c.get(f"/ImageStore/$/GetUploadSession?api-version=6.0&session-id={self.sid}").json()
        blocks = httpx.get(f"{self.container}/f.csv?{self.sas}&comp=blocklist&blocklisttype=all", headers=V).text
        return {
            "tus": self.c.head(self.tus, headers=TUS).headers["upload-offset"],
            "sf": [(r["StartPosition"], r["EndPosition"]) for u in sf["UploadSessions"] for r in u["ExpectedRanges"]],
            "graph": httpx.get(self.graph).json()["nextExpectedRanges"],
            "blob": blocks,
        }

    def second_halves_and_commit(self) -> None:
        """The chunks that were refused, sent again: each succeeds and every upload commits intact."""
        assert self.tus_patch(HALF, SIZE).status_code == 204
        assert _sha(self.c.get(self.tus).content) == _sha(self.data["tus"])
        assert self.sf_put(HALF, SIZE).status_code == 200
        r = self.c.post(f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={self.sid}")
        assert r.status_code == 200, r.text
        got = self.c.get("/ImageStore/full/f.bin/$/Content?api-version=6.0")
        assert _sha(got.content) == _sha(self.data["sf"])
        assert self.graph_put(HALF, SIZE).status_code == 201
        assert _sha(self.c.get(self.docs[0] + "/$value").content) == _sha(self.data["graph"])
        assert self.blob_put(1).status_code == 201
        xml = "<BlockList>" + "".join(f"<Latest>{i}</Latest>" for i in self.ids) + "</BlockList>"
        r = httpx.put(f"{self.container}/f.csv?{self.sas}&comp=blocklist", content=xml.encode(), headers=V)
        assert r.status_code == 201, r.text
        got = httpx.get(f"{self.container}/f.csv?{self.sas}", headers=V)
        assert _sha(got.content) == _sha(self.data["blob"])


def test_a_full_disk_is_refused_in_every_family_and_the_same_chunks_succeed_once_freed(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data = _tmpfs(tmp_path / "data", request)  # SQLite and the bytes on one small disk
    server = ServerProcess(data, ["--no-auth"]).start()
    request.addfinalizer(server.stop)
    up = Uploads(server, request)
    up.first_halves()
    whole = str(uuid.uuid4())  # a complete Service Fabric session, committed on the full disk
    assert up.c.put(f"/ImageStore/full/whole.bin/$/UploadChunk?api-version=6.0&session-id={whole}",
                    content=up.data["sf"], headers={"Content-Range": f"bytes 0-{SIZE - 1}/{SIZE}"}).status_code == 200
    before = up.received()
    ballast = _fill(data)

    _tus_refused(up.tus_patch(HALF, SIZE))
    _sf_refused(up.sf_put(HALF, SIZE))
    _graph_refused(up.graph_put(HALF, SIZE))
    _blob_refused(up.blob_put(1))
    # new sessions are refused the same way
    _tus_refused(up.c.post("/files/", headers={**TUS, "Upload-Length": "10"}))
    _sf_refused(up.c.put(f"/ImageStore/full/new.bin/$/UploadChunk?api-version=6.0&session-id={uuid.uuid4()}",
                         content=b"0123456789", headers={"Content-Range": "bytes 0-9/10"}))
    _graph_refused(up.graph_session(up.docs[1]))
    # and so is a commit: the session stays open, nothing is published
    commit = f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={whole}"
    _sf_refused(up.c.post(commit))
    sessions = up.c.get(f"/ImageStore/$/GetUploadSession?api-version=6.0&session-id={whole}").json()
    assert [s["SessionId"] for s in sessions["UploadSessions"]] == [whole]
    assert up.c.get("/ImageStore/full/whole.bin/$/Content?api-version=6.0").status_code == 404
    assert up.received() == before  # readable while full, and unchanged
    _no_500(server)

    ballast.unlink()
    up.second_halves_and_commit()
    assert up.graph_session(up.docs[1]).status_code == 200  # as for docs[0]
    assert up.c.post(commit).status_code == 200
    got = up.c.get("/ImageStore/full/whole.bin/$/Content?api-version=6.0")
    assert _sha(got.content) == _sha(up.data["sf"])
    _no_500(server)


def _filling_midway(body: bytes, folder: Path, ballast: list[Path]) -> Iterator[bytes]:
    """A body whose first part arrives (the write is claimed and streaming) before ``folder`` fills."""
    yield body[:1000]
    time.sleep(0.2)  # the server has claimed the range and written the first bytes
    ballast.append(_fill(folder))
    yield body[1000:]


@pytest.mark.parametrize("full", ["bytes", "metadata"])
def test_the_disk_filling_while_a_chunk_streams_records_nothing(
        full: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    small = _tmpfs(tmp_path / "small", request)
    if full == "bytes":  # byte store on the small disk, metadata on a roomy one
        data_dir, args = small, ["--metadata", f"sqlite:///{tmp_path / 'meta' / 'chunkd.db'}"]
    else:
        data_dir, args = tmp_path / "data", ["--metadata", f"sqlite:///{small / 'chunkd.db'}"]
    # the sweep runs every 0.5 s, on the full disk too
    server = ServerProcess(data_dir, ["--no-auth", *args], {"CHUNKD_SWEEP_INTERVAL": "0.5"}).start()
    request.addfinalizer(server.stop)
    up = Uploads(server, request)
    up.first_halves()
    before = up.received()

    ballast: list[Path] = []
    tail = up.data["tus"][HALF:]
    _tus_refused(up.c.patch(up.tus, content=_filling_midway(tail, small, ballast),
                            headers={**OCTETS, "Upload-Offset": str(HALF), "Content-Length": str(len(tail))}))
    ballast.pop().unlink()
    tail = up.data["sf"][HALF:]
    said = _sf_refused(up.c.put(up.sf_chunk, content=_filling_midway(tail, small, ballast),
                                headers={"Content-Range": f"bytes {HALF}-{SIZE - 1}/{SIZE}",
                                         "Content-Length": str(len(tail))}))
    assert ("metadata store" in said) == (full == "metadata")  # the layer that ran out said so
    ballast.pop().unlink()
    tail = up.data["graph"][HALF:]
    _graph_refused(httpx.put(up.graph, content=_filling_midway(tail, small, ballast), timeout=60,
                             headers={"Content-Range": f"bytes {HALF}-{SIZE - 1}/{SIZE}",
                                      "Content-Length": str(len(tail))}))
    ballast.pop().unlink()
    tail = up.data["blob"][HALF:]
    _blob_refused(httpx.put(f"{up.container}/f.csv?{up.sas}&comp=block&blockid={up.ids[1]}", timeout=60,
                            content=_filling_midway(tail, small, ballast),
                            headers={**V, "Content-Length": str(len(tail))}))
    ballast.pop().unlink()
    assert up.received() == before
    _no_500(server)
    up.second_halves_and_commit()
    _no_500(server)
    # every session is published or ended: none of the refused chunks' bytes stays staged
    assert [n for n in os.listdir(data_dir / "store" / "staging") if not n.startswith(".")] == []
    if full == "bytes":
        _publishing_refused_then_done(server, small, up)


def _publishing_refused_then_done(server: ServerProcess, small: Path, up: Uploads) -> None:
    """The byte store's disk full, the metadata's not: a local commit of one session in order is a link
    (no space), but a composite (Put Block List, tus concatenation) writes a manifest, a copy writes
    every byte, and a whole-file PUT writes its body. Each is refused, and works once space is freed."""
    sf_file = up.data["sf"]
    assert up.c.put("/ImageStore/apps/a.bin?api-version=6.0", content=sf_file).status_code == 200
    block = up.data["blob"][:HALF]
    for blockid in reversed(up.ids):  # out of order: the blob becomes a composite
        assert httpx.put(f"{up.container}/h.csv?{up.sas}&comp=block&blockid={blockid}", content=block,
                         headers=V).status_code == 201
    parts = []
    for _ in range(2):
        r = up.c.post("/files/", headers={**TUS, "Upload-Length": "1000", "Upload-Concat": "partial"})
        part = "/files/" + r.headers["location"].rsplit("/", 1)[1]
        assert up.c.patch(part, content=b"p" * 1000, headers={**OCTETS, "Upload-Offset": "0"}).status_code == 204
        parts.append(part)
    ballast = _fill(small)

    copy = {"RemoteSource": "apps\\a.bin", "RemoteDestination": "apps\\b.bin"}
    _sf_refused(up.c.post("/ImageStore/$/Copy?api-version=6.0", json=copy))
    _sf_refused(up.c.put("/ImageStore/apps/c.bin?api-version=6.0", content=sf_file))
    xml = ("<BlockList>" + "".join(f"<Latest>{i}</Latest>" for i in up.ids) + "</BlockList>").encode()
    _blob_refused(httpx.put(f"{up.container}/h.csv?{up.sas}&comp=blocklist", content=xml, headers=V))
    _blob_refused(httpx.put(f"{up.container}/g.csv?{up.sas}", content=block,
                            headers={**V, "x-ms-blob-type": "BlockBlob"}))
    final = {**TUS, "Upload-Concat": "final;" + " ".join(parts)}
    _tus_refused(up.c.post("/files/", headers=final))
    # creation-with-upload: the upload is created, none of its bytes stored (Upload-Offset says so), and the
    # client's PATCH from there is refused
    r = up.c.post("/files/", content=b"x" * HALF, headers={**OCTETS, "Upload-Length": str(HALF)})
    assert (r.status_code, r.headers["upload-offset"]) == (201, "0"), r.text
    created = "/files/" + r.headers["location"].rsplit("/", 1)[1]
    _tus_refused(up.c.patch(created, content=b"x" * HALF, headers={**OCTETS, "Upload-Offset": "0"}))
    time.sleep(1.2)  # two sweeps on the full disk
    listing = up.c.get("/ImageStore/apps?api-version=6.2").json()
    assert [f["StoreRelativePath"] for f in listing["StoreFiles"]] == ["apps\\a.bin"]
    assert httpx.get(f"{up.container}/h.csv?{up.sas}", headers=V).status_code == 404
    _no_500(server)

    ballast.unlink()
    assert up.c.post("/ImageStore/$/Copy?api-version=6.0", json=copy).status_code == 200
    assert _sha(up.c.get("/ImageStore/apps/b.bin/$/Content?api-version=6.0").content) == _sha(sf_file)
    assert up.c.put("/ImageStore/apps/c.bin?api-version=6.0", content=sf_file).status_code == 200
    r = httpx.put(f"{up.container}/h.csv?{up.sas}&comp=blocklist", content=xml, headers=V)
    assert r.status_code == 201, r.text
    assert _sha(httpx.get(f"{up.container}/h.csv?{up.sas}", headers=V).content) == _sha(block + block)
    r = up.c.post("/files/", headers=final)
    assert r.status_code == 201, r.text
    assert up.c.get("/files/" + r.headers["location"].rsplit("/", 1)[1]).content == b"p" * 2000
    assert up.c.patch(created, content=b"x" * HALF, headers={**OCTETS, "Upload-Offset": "0"}).status_code == 204
    assert up.c.get(created).content == b"x" * HALF
    _no_500(server)
