"""kill -9 of the server in the middle of a chunked Service Fabric upload, then restart and resume.

After the restart GetUploadSession must report exactly the acknowledged chunks as received (the chunk
that was mid-body when the server died is missing again), and resuming the missing ranges then
committing must give the original bytes.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

pytestmark = pytest.mark.slow

SID = "6f1d2c3b-4a59-4e8d-9c7b-1a2b3c4d5e6f"
PATH = "crash/app.bin"
CHUNK = 256 * 1024
N = 8
SIZE = N * CHUNK - 1000  # a short last chunk
ACKED = [5, 0, 2, 7]
INTERRUPTED = 3


def span(i: int) -> tuple[int, int]:
    return i * CHUNK, min((i + 1) * CHUNK, SIZE)


def chunk_url(sid: str = SID) -> str:
    return f"/ImageStore/{PATH}/$/UploadChunk?api-version=6.0&session-id={sid}"


def gaps(received: set[int]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i in range(N):
        if i in received:
            continue
        start, end = span(i)
        if out and int(out[-1]["EndPosition"]) + 1 == start:
            out[-1]["EndPosition"] = str(end - 1)
        else:
            out.append({"StartPosition": str(start), "EndPosition": str(end - 1)})
    return out


def test_kill_mid_chunk_then_resume(serve) -> None:
    server = serve()
    headers = {"Authorization": f"Bearer {server.token()}"}
    data = os.urandom(SIZE)

    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
        for i in ACKED:
            start, end = span(i)
            r = c.put(chunk_url(), content=data[start:end],
                      headers={"Content-Range": f"bytes {start}-{end - 1}/{SIZE}"})
            assert r.status_code == 200, r.text

    # the interrupted chunk: half its body is sent, then the sender stalls until the server is dead
    half_sent, release = threading.Event(), threading.Event()
    start, end = span(INTERRUPTED)

    def slow_body() -> Iterator[bytes]:
        yield data[start:start + CHUNK // 2]
        half_sent.set()
        release.wait(30)
        yield data[start + CHUNK // 2:end]

    outcome: list[object] = []

    def send() -> None:
        try:
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
                outcome.append(c.put(chunk_url(), content=slow_body(),
                                     headers={"Content-Range": f"bytes {start}-{end - 1}/{SIZE}"}))
        except httpx.TransportError as exc:
            outcome.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert half_sent.wait(30)
    time.sleep(0.5)  # let the server take the first half off the socket and start writing it
    server.kill()
    release.set()
    sender.join(30)
    assert outcome and isinstance(outcome[0], httpx.TransportError), outcome  # never acknowledged

    restarted = serve(data_dir=server.data_dir)
    # timeout 25 s: the dead request's claim on its range must be taken over (it is stale after 10 s),
    # not waited out (lease 30 s)
    with httpx.Client(base_url=restarted.url, headers=headers, timeout=25) as c:
        got = c.get(f"/ImageStore/$/GetUploadSession?api-version=6.0&session-id={SID}")
        assert got.status_code == 200, got.text
        session = got.json()["UploadSessions"][0]
        assert session["ExpectedRanges"] == gaps(set(ACKED))
        assert {"StartPosition": str(span(INTERRUPTED)[0]), "EndPosition": str(span(INTERRUPTED + 1)[1] - 1)} \
            in session["ExpectedRanges"]
        by_path = c.get(f"/ImageStore/{PATH}/$/GetUploadSession?api-version=6.0").json()["UploadSessions"]
        assert [s["ExpectedRanges"] for s in by_path] == [gaps(set(ACKED))]

        # resume exactly what the server says is missing, as a client would
        for rng in session["ExpectedRanges"]:
            s, e = int(rng["StartPosition"]), int(rng["EndPosition"])
            r = c.put(chunk_url(), content=data[s:e + 1], headers={"Content-Range": f"bytes {s}-{e}/{SIZE}"})
            assert r.status_code == 200, r.text
        left = c.get(f"/ImageStore/$/GetUploadSession?api-version=6.0&session-id={SID}").json()
        assert left["UploadSessions"][0]["ExpectedRanges"] == []
        assert c.post(f"/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={SID}").status_code == 200
        body = c.get(f"/ImageStore/{PATH}/$/Content?api-version=6.0").content
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
