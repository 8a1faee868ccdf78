"""Webhooks from the event outbox with two real server processes on one PostgreSQL database.

* Two nodes race to commit the same Service Fabric sessions (one data directory, so either can
  assemble): the receiver gets exactly one ``completed`` and one ``committed`` per session, each with an
  event id.
* A node holding a delivery (its POST is in flight: the receiver does not answer) is killed with SIGKILL:
  a node started afterwards takes the event over once the lease ends and delivers it, with the same id.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_multi_node import database  # noqa: F401 (a fixture: a fresh PostgreSQL database)
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
TUS = {"Tus-Resumable": "1.0.0"}


class Receiver:
    """An HTTP receiver recording every POST; while ``hanging`` it records and does not answer."""

    def __init__(self) -> None:
        self.attempts: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        self.hanging = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.attempts.append(doc)
                if outer.hanging.is_set():
                    time.sleep(3.0)  # longer than the sender's timeout: it gives up, we never answered
                    return
                with outer.lock:
                    outer.accepted.append(doc)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, what: str, predicate: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: attempts {self.attempts}")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _node(data_dir: Path, metadata: str, receiver: Receiver, **env: str) -> ServerProcess:
    settings = {"CHUNKD_WEBHOOK_URLS": receiver.url, "CHUNKD_WEBHOOK_BACKOFF": "0.05", "CHUNKD_WEBHOOK_RETRIES": "50",
                "CHUNKD_WEBHOOK_LEASE": "4", **env}
    return ServerProcess(data_dir, ["--no-auth", "--metadata", metadata], settings).start(timeout=90)


def test_two_nodes_racing_to_commit_send_one_committed_each(tmp_path: Path, database: str,  # noqa: F811
                                                           receiver: Receiver) -> None:
    nodes = [_node(tmp_path / "data", database, receiver) for _ in range(2)]
    try:
        sessions = []
        for n in range(4):
            sid, body = str(uuid.uuid4()), f"payload {n}".encode() * 100
            r = httpx.put(f"{nodes[n % 2].url}/ImageStore/race/f{n}.bin/$/UploadChunk?api-version=6.0&session-id={sid}",
                          content=body, headers={"Content-Range": f"bytes 0-{len(body) - 1}/{len(body)}"})
            assert r.status_code == 200, r.text
            sessions.append(sid)

        def commit(job: tuple[str, ServerProcess]) -> int:
            sid, node = job
            url = f"{node.url}/ImageStore/$/CommitUploadSession?api-version=6.0&session-id={sid}"
            return httpx.post(url, timeout=60).status_code

        with ThreadPoolExecutor(8) as pool:  # every session committed by both nodes at once, twice
            assert set(pool.map(commit, [(s, n) for s in sessions for n in nodes * 2])) == {200}
        for sid in sessions:
            receiver.wait_for(f"committed of {sid}", lambda s=sid: any(
                d["event"] == "committed" and d["upload"]["id"] == s for d in receiver.accepted))
        time.sleep(1.5)  # a second `committed` would arrive within a few polls
        for sid in sessions:
            for kind in ("completed", "committed"):
                got = [d for d in receiver.accepted if d["event"] == kind and d["upload"]["id"] == sid]
                assert len(got) == 1, (kind, sid, got)
                assert len(got[0]["id"]) == 32 and got[0]["upload"]["family"] == "servicefabric"
        ids = [d["id"] for d in receiver.accepted]
        assert len(ids) == len(set(ids))
    finally:
        for n in nodes:
            n.stop()
    for n in nodes:
        assert " 500 " not in n.log() and "Traceback" not in n.log(), n.log()


def test_a_node_killed_holding_a_delivery_leaves_it_to_another(tmp_path: Path, database: str,  # noqa: F811
                                                              receiver: Receiver) -> None:
    receiver.hanging.set()
    first = _node(tmp_path / "first", database, receiver)
    second: ServerProcess | None = None
    try:
        created = httpx.post(f"{first.url}/files/", headers={**TUS, "Upload-Length": "5"})
        assert created.status_code == 201, created.text
        upload_id = created.headers["location"].rsplit("/", 1)[1]
        r = httpx.patch(f"{first.url}/files/{upload_id}", content=b"hello",
                        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text

        def committed(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [d for d in docs if d["event"] == "committed" and d["upload"]["id"] == upload_id]

        receiver.wait_for("the first node's attempt", lambda: committed(receiver.attempts))
        first.kill()  # its POST is in flight: it holds the event's lease
        tried = committed(receiver.attempts)[0]["id"]
        receiver.hanging.clear()
        second = _node(tmp_path / "second", database, receiver)
        receiver.wait_for("delivery by the second node", lambda: committed(receiver.accepted))
        time.sleep(1.0)
        (delivered,) = committed(receiver.accepted)
        assert delivered["id"] == tried  # the same event, so a receiver can de-duplicate it
        assert delivered["upload"]["offset"] == 5 and delivered["upload"]["state"] == "committed"
        kinds = sorted(d["event"] for d in receiver.accepted if d["upload"]["id"] == upload_id)
        assert kinds == ["committed", "completed", "created"]
    finally:
        first.kill()
        if second is not None:
            second.stop()
