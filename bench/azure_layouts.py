"""Two ways to keep pieces in Azure Blob, measured on the real byte store against Azurite.

Usage: ``.venv/bin/python bench/azure_layouts.py [--endpoint URL] [--pieces 1024] [--rounds 2]``. Without
``--endpoint`` it starts Azurite (disk mode) like bench/azure_clients.py.

* **staged blocks** (what :mod:`chunkd.storage.azure` does): each 64 KiB piece is one Put Block into its
  session's staging blob; commit = Get Block List + Put Block List (the seal) + Copy Blob.
* **blob per piece** (the alternative): each piece is a Put Blob of its own; commit = one Put Block From
  URL per piece + Put Block List. Azurite 3.35 has no Put Block From URL, so that commit is estimated
  from the measured cost of one small SDK control call (Get Blob Properties) per piece, sequential and
  8 at a time -- a lower bound (the real call also copies the piece inside Azure).

Prints ms and CPU ms (this process) per piece written and per commit, and the number of requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import quote

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.azure_clients import ACCOUNT, KEY, start_azurite
from chunkd.storage._azure_client import parse_target
from chunkd.storage.azure import AzureStore

PIECE = 64 << 10


async def staged_blocks(store: AzureStore, n: int, data: bytes) -> dict[str, float]:
    ref = store.new_ref("bench")
    cpu, wall = time.process_time(), time.perf_counter()
    pieces = []
    for i in range(n):
        w = await store.open_piece(ref, i * PIECE, durable=True)
        await w.write(data)
        pieces.append(await w.finish(True))
    write = (time.perf_counter() - wall) * 1000 / n, (time.process_time() - cpu) * 1000 / n
    cpu, wall = time.process_time(), time.perf_counter()
    await store.assemble(pieces, "bench", f"staged-{ref}")
    commit = (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000
    await store.discard(ref)
    return {"write_ms": write[0], "write_cpu_ms": write[1], "commit_ms": commit[0], "commit_cpu_ms": commit[1],
            "commit_requests": 5}  # Get Block List, Put Block List, Copy Blob, 2 target checks


async def blob_per_piece(store: AzureStore, n: int, data: bytes) -> dict[str, float]:
    conn = store.conn
    session, client = conn._ensure()
    base = f"{store.prefix}pieces/{secrets.token_hex(4)}"
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        url = f"{conn.container_url}/{quote(f'{base}/{i:08x}', safe='/')}?{conn.sas()}"
        async with session.put(url, data=data, headers={"x-ms-blob-type": "BlockBlob",
                                                         "x-ms-version": "2025-01-05"}) as r:
            assert r.status == 201, await r.text()
    write = (time.perf_counter() - wall) * 1000 / n, (time.process_time() - cpu) * 1000 / n
    out = {"write_ms": write[0], "write_cpu_ms": write[1], "commit_requests": n + 1}
    for width in (1, 8):
        gate = asyncio.Semaphore(width)

        async def call(i: int, gate: asyncio.Semaphore = gate) -> None:
            async with gate:
                await client.get_blob_client(f"{base}/{i:08x}").get_blob_properties()

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(call(i) for i in range(n)))
        out[f"commit_ms_{width}"] = (time.perf_counter() - wall) * 1000
        out["commit_cpu_ms"] = (time.process_time() - cpu) * 1000
    return out


async def run(endpoint: str, n: int) -> dict[str, dict[str, float]]:
    target = parse_target(f"azure://{ACCOUNT}/layouts/{secrets.token_hex(4)}?endpoint={endpoint}",
                          {"AZURE_STORAGE_KEY": KEY})
    store = AzureStore(target)
    data = os.urandom(PIECE)
    try:
        w = await store.open_piece(store.new_ref("warm"), 0, durable=True)  # creates the container
        await w.write(data)
        await w.finish(True)
        return {"staged blocks (chosen)": await staged_blocks(store, n, data),
                "blob per piece": await blob_per_piece(store, n, data)}
    finally:
        await store.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint")
    ap.add_argument("--pieces", type=int, default=1024, help="64 KiB pieces per session (default 1024 = 64 MiB)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    proc = None
    endpoint = args.endpoint
    if endpoint is None:
        proc, endpoint, _ = start_azurite()
    try:
        rows: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for name, row in asyncio.run(run(endpoint, args.pieces)).items():
                rows.setdefault(name, []).append(row)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    print(f"{args.pieces} pieces of 64 KiB, best of {args.rounds} rounds")
    print("| layout | ms / piece written | CPU ms / piece | commit requests | commit ms | commit CPU ms |")
    print("|---|---|---|---|---|---|")
    for name, runs in rows.items():
        best = {k: min(r[k] for r in runs) for k in runs[0]}
        commit = (f"{best['commit_ms']:.0f}" if "commit_ms" in best
                  else f"≥ {best['commit_ms_1']:.0f} (1 at a time) / ≥ {best['commit_ms_8']:.0f} (8 at a time)")
        print(f"| {name} | {best['write_ms']:.2f} | {best['write_cpu_ms']:.2f} | {best['commit_requests']:.0f} | "
              f"{commit} | {best['commit_cpu_ms']:.0f} |")
    print("rerun: .venv/bin/python bench/azure_layouts.py [--endpoint URL] [--pieces N] [--rounds N]")


if __name__ == "__main__":
    main()
