"""tuspy 1.1.0 uploading one file to chunkd's tus endpoint: MB/s of the upload as a real client sees it.

Usage: ``.venv/bin/python bench/tus_upload.py [--size-mib 1024] [--chunk-mib 8] [--checksum] [--url URL]``.
Without ``--url`` it starts ``chunkd serve --no-auth`` on a free port with a temporary data directory
(durable writes on, as by default). tuspy runs in .venv-tuspy (``scripts/clients/tuspy.sh``); its sync
uploader opens a new TCP connection per PATCH, as it does for its users. The file is random bytes, written
before the clock starts; the figure covers POST + every PATCH, and the upload is verified by HEAD.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.local_server import start_chunkd

ROOT = Path(__file__).resolve().parents[1]
TUSPY = ROOT / ".venv-tuspy" / "bin" / "python"

DRIVER = r'''
import json, sys, time
from tusclient import client
endpoint, path, chunk, checksum = sys.argv[1:5]
started = time.perf_counter()
uploader = client.TusClient(endpoint).uploader(file_path=path, chunk_size=int(chunk), upload_checksum=checksum == "1")
uploader.upload()
print(json.dumps({"url": uploader.url, "seconds": time.perf_counter() - started, "offset": uploader.offset}))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--chunk-mib", type=int, default=8)
    ap.add_argument("--checksum", action="store_true", help="tuspy upload_checksum=True (sha1 per PATCH)")
    ap.add_argument("--url", help="base URL of a running chunkd (default: start one)")
    args = ap.parse_args()
    if not TUSPY.exists():
        raise SystemExit("run scripts/clients/tuspy.sh first")
    with tempfile.TemporaryDirectory(prefix="chunkd-bench-tus-") as tmp:
        src = Path(tmp) / "src.bin"
        with open(src, "wb") as f:
            block = os.urandom(8 << 20)
            for i in range(args.size_mib // 8):
                f.write(block[i % 7:] + block[: i % 7])  # distinct blocks, cheap to make
        proc, url = (None, args.url) if args.url else start_chunkd(Path(tmp) / "data", "--no-auth")
        try:
            out = subprocess.run([str(TUSPY), "-c", DRIVER, url + "/files/", str(src), str(args.chunk_mib << 20),
                                  "1" if args.checksum else "0"], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            head = httpx.head(result["url"], headers={"Tus-Resumable": "1.0.0"})
            size = args.size_mib << 20
            assert head.headers["upload-offset"] == str(size), head.headers
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    seconds = float(result["seconds"])
    print(f"tuspy 1.1.0 -> chunkd /files/: {args.size_mib} MiB in {args.chunk_mib} MiB chunks"
          f"{' with sha1 checksums' if args.checksum else ''}: {seconds:.2f} s, {size / seconds / 1e6:.1f} MB/s "
          f"({size / seconds / (1 << 20):.1f} MiB/s)")


if __name__ == "__main__":
    main()
