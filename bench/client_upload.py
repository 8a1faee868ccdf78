"""``chunkd upload`` vs the azure-servicefabric SDK loop: MB/s of one file into chunkd's Service Fabric endpoint.

Usage: ``.venv/bin/python bench/client_upload.py [--size-mib 1024] [--parallel 1 4] [--chunk-mib 8] [--reps 1]``

Starts a fresh ``chunkd serve`` (bearer auth, durable writes, SQLite + local files) on a free port with a
temporary data directory, writes a random file, then for each round:

* ``chunkd upload FILE http://.../ImageStore/bench/<n>.bin --parallel N --chunk-size 8M --no-resume`` as a
  process: MB/s over the wall time of the process (Python start-up and imports, every chunk, commit, size
  check) and over the transfer alone (the ``seconds`` it reports: first request to size check);
* the SDK loop: ``upload_file_chunk`` for sequential 8 MiB chunks of one session, then
  ``commit_image_store_upload_session`` (what a script using azure-servicefabric 8.2.0.0 does).

Both read the file from the page cache (it is read once before the clock starts). MB = 10^6 bytes.
Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.local_server import start_chunkd, token_for

MiB = 1 << 20
CHUNKD = [sys.executable, "-m", "chunkd.cli.main"]


def cli_upload(path: Path, url: str, token: str, parallel: int, chunk_mib: int, name: str) -> tuple[float, float]:
    began = time.perf_counter()
    out = subprocess.run([*CHUNKD, "upload", str(path), f"{url}/ImageStore/bench/{name}", "--parallel", str(parallel),
                          "--chunk-size", f"{chunk_mib}M", "--no-resume", "--token", token, "--json"],
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["size"] == path.stat().st_size
    return wall, float(row["seconds"])


def sdk_upload(path: Path, url: str, token: str, chunk_mib: int, name: str) -> float:
    from azure.servicefabric import ServiceFabricClientAPIs
    from msrest.authentication import Authentication

    class Bearer(Authentication):  # type: ignore[misc]
        def signed_session(self, session: Any = None) -> Any:
            session = super().signed_session(session)
            session.headers["Authorization"] = f"Bearer {token}"
            return session

    client = ServiceFabricClientAPIs(Bearer(), base_url=url)
    size = path.stat().st_size
    chunk = chunk_mib * MiB
    sid = str(uuid.uuid4())
    began = time.perf_counter()
    with path.open("rb") as fh:
        for start in range(0, size, chunk):
            data = fh.read(chunk)
            client.upload_file_chunk(f"bench/{name}", sid, f"bytes {start}-{start + len(data) - 1}/{size}",
                                     content=data)
    client.commit_image_store_upload_session(sid)
    elapsed = time.perf_counter() - began
    return elapsed, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chunkd-client-bench-") as tmp:
        work = Path(tmp)
        src = work / "src.bin"
        with src.open("wb") as fh:
            for _ in range(args.size_mib):
                fh.write(os.urandom(MiB))
        src.read_bytes()  # into the page cache for every contender alike
        proc, url = start_chunkd(work / "data")
        token = token_for(work / "data")
        rows: dict[str, list[tuple[float, float]]] = {}
        try:
            for rep in range(args.reps):
                for n in args.parallel:
                    rows.setdefault(f"chunkd upload --parallel {n}", []).append(
                        cli_upload(src, url, token, n, args.chunk_mib, f"cli-{n}-{rep}.bin"))
                rows.setdefault(f"azure-servicefabric SDK loop ({args.chunk_mib} MiB chunks)", []).append(
                    sdk_upload(src, url, token, args.chunk_mib, f"sdk-{rep}.bin"))
        finally:
            proc.terminate()
            proc.wait(30)
    size_mb = args.size_mib * MiB / 1e6
    print(f"\n{args.size_mib} MiB file, chunkd Service Fabric endpoint on 127.0.0.1, {os.cpu_count()} CPUs\n")
    print("| client | process wall, s | MB/s (wall) | transfer, s | MB/s (transfer) |")
    print("|---|---:|---:|---:|---:|")
    for name, times in rows.items():
        wall, transfer = min(times)
        print(f"| {name} | {wall:.2f} | {size_mb / wall:.0f} | {transfer:.2f} | {size_mb / transfer:.0f} |")


if __name__ == "__main__":
    main()
