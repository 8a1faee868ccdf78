"""azure-servicefabric 8.2.0.0 SDK uploading one file in chunks to chunkd's image store: MB/s as the SDK sees it.

Usage: ``.venv/bin/python bench/sf_sdk_upload.py [--size-mib 256] [--chunk-mib 8] [--threads 1 4] [--url URL]``.
Without ``--url`` it starts a fresh ``chunkd serve`` (bearer-token auth, durable writes, SQLite + local files)
on a free port with a temporary data directory, and stops it afterwards. For each thread count it uploads the
file with one new session (UploadChunk per chunk, in order, spread over the threads, one SDK client per
thread), commits it, and checks the published size. The figure covers every chunk and the commit; the file
is random bytes made before the clock starts. MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from azure.servicefabric import ServiceFabricClientAPIs
from msrest.authentication import Authentication

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.local_server import start_chunkd, token_for


class Bearer(Authentication):  # type: ignore[misc]
    """No-op msrest credentials that add a bearer token (none for ``--url`` servers run with --no-auth)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def signed_session(self, session: Any = None) -> Any:
        session = super().signed_session(session)
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        return session


def _start(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    proc, url = start_chunkd(data_dir)
    return proc, url, token_for(data_dir)


def upload(url: str, token: str, data: bytes, chunk: int, threads: int) -> float:
    """Upload ``data`` as one session from ``threads`` threads; returns seconds (chunks + commit)."""
    sid = str(uuid.uuid4())
    path = f"bench\\sdk-{threads}t.bin"
    size = len(data)
    local = threading.local()

    def client() -> ServiceFabricClientAPIs:
        if not hasattr(local, "client"):
            local.client = ServiceFabricClientAPIs(Bearer(token), base_url=url)
            local.client.config.retry_policy.total = False  # a failure must show, not be retried away
        return local.client

    def send(start: int) -> None:
        end = min(start + chunk, size)
        client().upload_file_chunk(path, sid, f"bytes {start}-{end - 1}/{size}", content=data[start:end])

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, range(0, size, chunk)))
    client().commit_image_store_upload_session(sid)
    seconds = time.perf_counter() - started
    listed = client().get_image_store_content(path).store_files[0].file_size
    if listed != str(size):
        raise SystemExit(f"published size {listed}, expected {size}")
    client().delete_image_store_upload_session(sid)
    client().delete_image_store_content(path)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--chunk-mib", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--url", help="base URL of a running chunkd (default: start a fresh one)")
    ap.add_argument("--token", default="", help="bearer token for --url")
    args = ap.parse_args()
    size, chunk = args.size_mib << 20, args.chunk_mib << 20
    data = os.urandom(size)
    with tempfile.TemporaryDirectory(prefix="chunkd-bench-sf-") as tmp:
        proc, url, token = (None, args.url, args.token) if args.url else _start(Path(tmp) / "data")
        try:
            print(f"azure-servicefabric SDK -> {url}: {args.size_mib} MiB in {args.chunk_mib} MiB chunks")
            for threads in args.threads:
                seconds = upload(url, token, data, chunk, threads)
                print(f"  {threads} thread(s): {seconds:6.2f} s  {size / seconds / 1e6:8.1f} MB/s")
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    print(f"rerun: .venv/bin/python bench/sf_sdk_upload.py --size-mib {args.size_mib} --chunk-mib {args.chunk_mib}"
          f" --threads {' '.join(map(str, args.threads))}")


if __name__ == "__main__":
    main()
