"""A Graph Universal Print document uploaded through ``uploadUrl`` with parallel segments: MB/s.

Usage: ``.venv/bin/python bench/print_upload.py [--size-mib 256] [--segment-mib 8] [--parallel 4] [--url URL]``.
Without ``--url`` it starts ``chunkd serve --no-auth`` on a free port with a temporary data directory
(durable writes on, as by default). The flow is the current Graph form: register a printer, create a job,
``createUploadSession``, then ``--parallel`` threads PUT ``--segment-mib`` segments (claimed from a shared
queue, so they arrive out of order) to the uploadUrl until one gets the 201. The clock covers the segment
PUTs only; the document is then read back through ``$value`` and compared (SHA-256) outside the clock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.driver import Conn, FileBody
from bench.local_server import start_chunkd


def upload(url: str, src: Path, size: int, segment: int, parallel: int) -> dict[str, object]:
    c = httpx.Client(base_url=url, timeout=600)
    printer = c.post("/v1.0/print/printers", json={"displayName": "bench"}).json()["id"]
    job = c.post(f"/v1.0/print/printers/{printer}/jobs", json={}).json()
    doc = f"/v1.0/print/printers/{printer}/jobs/{job['id']}/documents/{job['documents'][0]['id']}"
    session = c.post(doc + "/createUploadSession", json={"properties": {
        "documentName": "bench.pdf", "contentType": "application/pdf", "size": size}}).json()
    target = urlparse(session["uploadUrl"])
    path = f"{target.path}?{target.query}"
    todo: queue.Queue[tuple[int, int]] = queue.Queue()
    for start in range(0, size, segment):
        todo.put((start, min(start + segment, size)))
    statuses: list[int] = []
    errors: list[str] = []
    fd = os.open(src, os.O_RDONLY)

    def worker() -> None:
        conn = Conn(target.hostname or "127.0.0.1", target.port or 80)
        try:
            while True:
                try:
                    s, e = todo.get_nowait()
                except queue.Empty:
                    return
                r = conn.request("PUT", path, {"Content-Range": f"bytes {s}-{e - 1}/{size}",
                                               "Content-Type": "application/octet-stream"}, FileBody(fd, s, e - s))
                statuses.append(r.status)
                if r.status not in (201, 202):
                    errors.append(f"{r.status} {r.body[:200]!r}")
                    return
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    os.close(fd)
    if errors or statuses.count(201) < 1:
        raise SystemExit(f"upload failed: {errors or statuses}")
    digest = hashlib.sha256()
    with c.stream("GET", doc + "/$value") as r:
        for piece in r.iter_bytes(1 << 20):
            digest.update(piece)
    with open(src, "rb") as f:
        expected = hashlib.file_digest(f, "sha256").hexdigest()
    c.close()
    return {"seconds": round(seconds, 3), "mb_s": round(size / 1e6 / seconds, 1),
            "mib_s": round(size / (1 << 20) / seconds, 1), "segments": len(statuses),
            "verified": digest.hexdigest() == expected}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--segment-mib", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--url", help="base URL of a running chunkd started with --no-auth (default: start one)")
    args = ap.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="chunkd-bench-print-") as tmp:
        src = Path(tmp) / "src.bin"
        with open(src, "wb") as f:
            block = os.urandom(8 << 20)
            for i in range(-(-size // len(block))):
                f.write((block[i % 7:] + block[: i % 7])[: min(len(block), size - i * len(block))])
        proc, url = (None, args.url) if args.url else start_chunkd(Path(tmp) / "data", "--no-auth")
        try:
            result = upload(url, src, size, args.segment_mib << 20, args.parallel)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    print(json.dumps({"size_mib": args.size_mib, "segment_mib": args.segment_mib, "parallel": args.parallel,
                      **result}))


if __name__ == "__main__":
    main()
