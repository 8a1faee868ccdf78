"""Two server processes on one data directory: an uploadUrl signed by one is honoured by the other, and
segments split between them complete the document once."""

from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx

from tests.protocols.print.conftest import ALICE, PrintEnv
from tests.serverproc import ServerProcess


def test_segments_through_two_processes(env: PrintEnv) -> None:
    other = ServerProcess(env.server.data_dir, []).start()
    try:
        alice = env.user(ALICE, "PrintJob.ReadWrite")
        job, _, doc = env.new_job(alice)
        data = os.urandom(1 << 20)
        s = env.client.post(doc + "/createUploadSession", headers=alice, json={"properties": {
            "documentName": "two.pdf", "contentType": "application/pdf", "size": len(data)}}).json()
        url_a = s["uploadUrl"]
        parts = urlparse(url_a)
        url_b = f"{other.url}{parts.path}?{parts.query}"
        step = 64 * 1024
        pieces = [(p, min(p + step, len(data))) for p in range(0, len(data), step)]
        random.Random(9).shuffle(pieces)

        def send(i_piece: tuple[int, tuple[int, int]]) -> int:
            i, (a, b) = i_piece
            url = url_a if i % 2 else url_b
            return httpx.put(url, content=data[a:b], headers={"Content-Range": f"bytes {a}-{b - 1}/{len(data)}"},
                             timeout=60).status_code

        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(send, enumerate(pieces)))
        assert 201 in statuses and set(statuses) <= {201, 202}
        for base in (env.server.url, other.url):
            with httpx.Client(base_url=base, headers=alice) as c:
                got = c.get(doc + "/$value").content
                assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
                assert c.get(f"{env.jobs_url()}/{job}").json()["documents"][0]["size"] == len(data)
    finally:
        other.stop()
