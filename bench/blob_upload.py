"""azure-storage-blob 12.31.1 uploading one file into an Industry Data sessionUrl: MB/s as the SDK's user sees it.

Usage: ``.venv/bin/python bench/blob_upload.py [--size-mib 150] [--concurrency 4] [--runs 1] [--workers 1]
[--url URL]``. Without ``--url`` it starts ``chunkd serve --no-auth`` on a free port with a temporary data
directory (durable writes on, as by default). The figure covers ``upload_blob`` only (Put Block x n with
4 MiB blocks + Put Block List, staged as core sessions and published with compose); the file is random
bytes written before the clock starts, and the upload is verified by downloading it and comparing sha256.
Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from azure.storage.blob import ContainerClient

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.local_server import start_chunkd

BETA = "/beta/external/industryData"
SESSION = "microsoft.graph.industryData.azureDataLakeConnector/getUploadSession"


def session_url(base: str) -> str:
    body = {"@odata.type": "#microsoft.graph.industryData.azureDataLakeConnector", "displayName": "bench"}
    connector = httpx.post(base + BETA + "/dataConnectors", json=body).json()["id"]
    return str(httpx.get(f"{base}{BETA}/dataConnectors/{connector}/{SESSION}").json()["sessionUrl"])


def run_once(base: str, path: Path, size: int, digest: str, concurrency: int) -> dict[str, object]:
    container = ContainerClient.from_container_url(session_url(base))
    blob = container.get_blob_client("bench.bin")
    with path.open("rb") as fh:
        started = time.perf_counter()
        blob.upload_blob(fh, length=size, overwrite=True, max_concurrency=concurrency)
        seconds = time.perf_counter() - started
    got = hashlib.sha256()
    for chunk in blob.download_blob(max_concurrency=concurrency).chunks():
        got.update(chunk)
    assert got.hexdigest() == digest, "downloaded bytes differ"
    return {"bench": "blob_upload", "client": "azure-storage-blob 12.31.1", "size_mib": size >> 20,
            "max_concurrency": concurrency, "seconds": round(seconds, 3), "mb_per_s": round(size / seconds / 1e6, 1),
            "mib_per_s": round(size / seconds / (1 << 20), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=150)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--url", default="")
    args = ap.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="chunkd-bench-") as tmp:
        path = Path(tmp) / "upload.bin"
        digest = hashlib.sha256()
        with path.open("wb") as fh:
            for _ in range(args.size_mib):
                piece = os.urandom(1 << 20)
                digest.update(piece)
                fh.write(piece)
        proc = None
        base = args.url
        if not base:
            proc, base = start_chunkd(Path(tmp) / "data", "--no-auth", "--workers", str(args.workers))
        try:
            for _ in range(args.runs):
                print(json.dumps(run_once(base, path, size, digest.hexdigest(), args.concurrency)), flush=True)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
