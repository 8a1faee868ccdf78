"""Crashes at exact instants (``CHUNKD_FAULTS``, :mod:`chunkd.core.faults`) of a real server process, and a
commit sent to a node that does not hold the bytes. Every session ends up finishable or cleanly refused,
never "complete" but unreadable:

* a tus upload whose last PATCH was recorded just before the process died is committed by the next HEAD
  or GET, or by the sweep -- which never expires it, however old it is;
* a Service Fabric commit that died after publishing but before recording it finishes on the retry;
* a commit on a node whose data directory lacks the session's bytes fails in the family's format and
  leaves the session open, so the node that holds them can still commit it.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conformance.metadata_suite import _truncate, pg_database, pg_url  # noqa: F401  (fixture)
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.slow
TUS = {"Tus-Resumable": "1.0.0"}


def _died(server: ServerProcess, request: Callable[[], object]) -> None:
    """Send a request that reaches an armed fault point: the server process dies under it."""
    with pytest.raises(httpx.TransportError):
        request()
    assert server.proc is not None
    assert server.proc.wait(10) == 86  # the fault point's exit status, not some other crash


def _patch(url: str, offset: int, data: bytes) -> httpx.Response:
    return httpx.patch(url, content=data, timeout=30, headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


def _tus_upload_crashing_at_the_end(tmp_path: Path, data: bytes, **env: str) -> tuple[ServerProcess, str]:
    data_dir = tmp_path / "data"
    first = ServerProcess(data_dir, ["--no-auth"]).start()
    r = httpx.post(first.url + "/files/", headers={**TUS, "Upload-Length": str(len(data))})
    path = r.headers["location"].split("//", 1)[1].split("/", 1)[1]
    assert _patch(f"{first.url}/{path}", 0, data[:100_000]).status_code == 204
    first.stop()
    crashing = ServerProcess(data_dir, ["--no-auth"], {"CHUNKD_FAULTS": "after-record:exit"}, port=first.port)
    crashing.start()
    _died(crashing, lambda: _patch(f"{crashing.url}/{path}", 100_000, data[100_000:]))
    again = ServerProcess(data_dir, ["--no-auth"], env, port=first.port).start()
    return again, f"{again.url}/{path}"


def test_tus_upload_recorded_but_not_committed_is_committed_by_the_next_head(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    server, url = _tus_upload_crashing_at_the_end(tmp_path, data)
    try:
        head = httpx.head(url, headers=TUS)
        assert head.status_code == 200 and head.headers["upload-offset"] == str(len(data))
        got = httpx.get(url)
        assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()
        sid = url.rsplit("/", 1)[1]
        detail = httpx.get(f"{server.url}/chunkd/v1/sessions/{sid}").json()
        assert detail["state"] == "committed"
    finally:
        server.stop()


def test_the_sweep_commits_a_complete_upload_instead_of_expiring_it(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    # an upload lifetime of 1 s and a sweep every 0.5 s: the upload is long expired when the sweep finds it
    server, url = _tus_upload_crashing_at_the_end(tmp_path, data, CHUNKD_TUS_EXPIRATION="1",
                                                  CHUNKD_SWEEP_INTERVAL="0.5")
    try:
        sid = url.rsplit("/", 1)[1]
        deadline = time.monotonic() + 20
        state = ""
        while time.monotonic() < deadline and state != "committed":
            time.sleep(0.3)
            state = httpx.get(f"{server.url}/chunkd/v1/sessions/{sid}").json().get("state", "")
        assert state == "committed"  # no HEAD or GET was needed
        assert httpx.get(url).content == data
    finally:
        server.stop()


def test_service_fabric_commit_that_died_after_publishing_finishes_on_the_retry(tmp_path: Path) -> None:
    data_dir, sid, data = tmp_path / "data", str(uuid.uuid4()), os.urandom(200_000)
    chunk = f"/ImageStore/crash/pub.bin/$/UploadChunk?api-version=6.0&session-id={sid}"
    commit = f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}"
    first = ServerProcess(data_dir, ["--no-auth"]).start()
    r = httpx.put(first.url + chunk, content=data, headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
    assert r.status_code == 200, r.text
    first.stop()
    crashing = ServerProcess(data_dir, ["--no-auth"], {"CHUNKD_FAULTS": "after-assemble:exit"}, port=first.port)
    crashing.start()
    _died(crashing, lambda: httpx.post(crashing.url + commit, timeout=30))
    again = ServerProcess(data_dir, ["--no-auth"], port=first.port).start()
    try:
        assert httpx.post(again.url + commit).status_code == 200
        got = httpx.get(again.url + "/ImageStore/crash/pub.bin/$/Content?api-version=6.0")
        assert got.status_code == 200 and got.content == data
        listing = httpx.get(again.url + "/ImageStore/crash?api-version=6.2").json()
        assert [f["FileSize"] for f in listing["StoreFiles"]] == [str(len(data))]
    finally:
        again.stop()


def _empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of this session's PostgreSQL test database, migrated and emptied."""
    import anyio

    from chunkd.metadata import open_store

    url = pg_url(request.getfixturevalue("pg_database"))

    async def empty() -> None:
        store = open_store(url, str(tmp_path))
        await store.migrate()
        await _truncate(store)
        await store.close()

    anyio.run(empty)
    return url


@pytest.mark.postgres
def test_commit_on_a_node_without_the_bytes_is_refused_and_the_session_stays_open(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    shared = ["--no-auth", "--metadata", _empty_database(request, tmp_path)]
    holder = ServerProcess(tmp_path / "a", shared).start()
    other = ServerProcess(tmp_path / "b", shared).start()  # its own data directory: not the bytes
    sid, data = str(uuid.uuid4()), os.urandom(50_000)
    try:
        r = httpx.put(f"{holder.url}/ImageStore/two/f.bin/$/UploadChunk?api-version=6.0&session-id={sid}",
                      content=data, headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
        assert r.status_code == 200, r.text
        commit = f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}"
        refused = httpx.post(other.url + commit)
        assert refused.status_code == 503 and refused.headers.get("retry-after")
        assert refused.json()["Error"]["Code"] == "FABRIC_E_SERVICE_TOO_BUSY"
        assert "another data directory" in refused.json()["Error"]["Message"]
        sessions = httpx.get(f"{holder.url}/ImageStore/$/GetUploadSession?api-version=6.0&session-id={sid}").json()
        assert sessions["UploadSessions"][0]["SessionId"] == sid  # still open
        assert httpx.get(f"{other.url}/ImageStore/two/f.bin/$/Content?api-version=6.0").status_code == 404
        assert httpx.post(holder.url + commit).status_code == 200
        assert httpx.get(f"{holder.url}/ImageStore/two/f.bin/$/Content?api-version=6.0").content == data
    finally:
        holder.stop()
        other.stop()


@pytest.mark.postgres
def test_a_small_chunk_that_died_inside_its_transaction_is_missing_and_resent(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """On PostgreSQL a small chunk is claimed, written and recorded in one transaction holding the session
    (``metadata/_pg_held.py``): a process that dies after the bytes were flushed, before the commit, leaves
    the chunk unreceived (never received-but-unwritten), the chunk before it intact, and the session
    finishable by resending what GetUploadSession reports missing."""
    shared = ["--no-auth", "--metadata", _empty_database(request, tmp_path)]
    sid, data = str(uuid.uuid4()), os.urandom(50_000)
    chunk = f"/ImageStore/held/f.bin/$/UploadChunk?api-version=6.0&session-id={sid}"
    half = len(data) // 2

    def put(server: ServerProcess, s: int, e: int) -> httpx.Response:
        return httpx.put(server.url + chunk, content=data[s:e], timeout=30,
                         headers={"Content-Range": f"bytes {s}-{e - 1}/{len(data)}"})

    first = ServerProcess(tmp_path / "d", shared).start()
    assert put(first, 0, half).status_code == 200
    first.stop()
    crashing = ServerProcess(tmp_path / "d", shared, {"CHUNKD_FAULTS": "small-written:exit"}, port=first.port).start()
    _died(crashing, lambda: put(crashing, half, len(data)))
    again = ServerProcess(tmp_path / "d", shared, port=first.port).start()
    try:
        got = httpx.get(f"{again.url}/ImageStore/$/GetUploadSession?api-version=6.0&session-id={sid}").json()
        assert got["UploadSessions"][0]["ExpectedRanges"] == [
            {"StartPosition": str(half), "EndPosition": str(len(data) - 1)}]
        assert put(again, half, len(data)).status_code == 200
        assert httpx.post(f"{again.url}/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}"
                          ).status_code == 200
        assert httpx.get(f"{again.url}/ImageStore/held/f.bin/$/Content?api-version=6.0").content == data
    finally:
        again.stop()
