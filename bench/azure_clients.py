"""Azure Blob client libraries measured inside one Python process, as chunkd's byte store would use them.

Usage: ``.venv/bin/python bench/azure_clients.py [--endpoint URL] [--mib 128] [--small 1500] [--rounds 2]``.
Without ``--endpoint`` it starts Azurite (disk mode, ``--loose --skipApiVersionCheck``) from
``tests/clients/azurite`` (``scripts/clients/azurite.sh`` installs it) on a free port with a temporary
location, and stops it at the end. Needs ``obstore`` and ``aiohttp`` in the environment for those rows
(``uv pip install --python .venv/bin/python obstore aiohttp``); missing ones are skipped.

For each library, on one asyncio event loop (chunkd's server loop):

* **large**: ``--mib`` MiB uploaded as 4 MiB blocks (Put Block; obstore has no per-block call, so it
  writes each 4 MiB piece as its own blob), sequentially and 4 at a time -> CPU-seconds of this
  process per GiB (``time.process_time``: every thread, the SDK's worker threads included);
* **small**: ``--small`` sequential 64 KiB Put Blocks (obstore: 64 KiB blobs) -> wall ms and CPU ms
  per request.

The payload is random bytes generated before the clock starts. Prints one table and the ratios to
the cheapest row; the figures in bench/README.md ("Azure Blob client libraries") come from this script.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
AZURITE = ROOT / "tests" / "clients" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BLOCK = 4 << 20
SMALL = 64 << 10

Put = Callable[[str, str, bytes], Awaitable[None]]  # (blob name, block id, data)


def start_azurite() -> tuple[subprocess.Popen[bytes], str, str]:
    if not AZURITE.exists():
        sys.exit("Azurite is not installed: run scripts/clients/azurite.sh (or pass --endpoint)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    where = tempfile.mkdtemp(prefix="azurite-bench-")
    proc = subprocess.Popen([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", where,
                             "--loose", "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("Azurite did not start")
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}/{ACCOUNT}", where


def block_id(i: int) -> str:
    return base64.b64encode(f"{i:032d}".encode()).decode()


async def sdk_sync(endpoint: str, container: str) -> tuple[Put, Callable[[], Awaitable[None]]]:
    """azure-storage-blob's sync client, each call in a worker thread (as chunkd would call it)."""
    from azure.storage.blob import ContainerClient

    client = ContainerClient(endpoint, container, credential={"account_name": ACCOUNT, "account_key": KEY})

    async def put(blob: str, bid: str, data: bytes) -> None:
        await asyncio.to_thread(client.get_blob_client(blob).stage_block, bid, data, length=len(data))

    async def close() -> None:
        client.close()

    return put, close


async def sdk_aio(endpoint: str, container: str) -> tuple[Put, Callable[[], Awaitable[None]]]:
    """azure-storage-blob's asyncio client (aiohttp transport)."""
    from azure.storage.blob.aio import ContainerClient

    client = ContainerClient(endpoint, container, credential={"account_name": ACCOUNT, "account_key": KEY})

    async def put(blob: str, bid: str, data: bytes) -> None:
        await client.get_blob_client(blob).stage_block(bid, data, length=len(data))

    return put, client.close


async def obstore_rows(endpoint: str, container: str) -> tuple[Put, Callable[[], Awaitable[None]]]:
    """obstore's Azure store: no per-block call, so each piece is a blob of its own (Put Blob)."""
    import obstore
    from obstore.store import AzureStore

    store = AzureStore(container_name=container, account_name=ACCOUNT, access_key=KEY, endpoint=endpoint,
                       client_options={"allow_http": True})

    async def put(blob: str, bid: str, data: bytes) -> None:
        await obstore.put_async(store, f"{blob}/{bid}", data)

    async def close() -> None:
        return None

    return put, close


async def httpx_sas(endpoint: str, container: str) -> tuple[Put, Callable[[], Awaitable[None]]]:
    """httpx (already a chunkd dependency) sending Put Block with a container SAS: the floor of a
    hand-written client, for comparison."""
    import httpx
    from azure.storage.blob import generate_container_sas

    sas = generate_container_sas(ACCOUNT, container, account_key=KEY, permission="rw",
                                 expiry=datetime.now(UTC) + timedelta(hours=2))
    client = httpx.AsyncClient(timeout=60)

    async def put(blob: str, bid: str, data: bytes) -> None:
        url = f"{endpoint}/{container}/{blob}"
        r = await client.put(f"{url}?comp=block&blockid={quote(bid, safe='')}&{sas}", content=data,
                             headers={"x-ms-version": "2025-11-05"})
        r.raise_for_status()

    return put, client.aclose


async def aiohttp_sas(endpoint: str, container: str) -> tuple[Put, Callable[[], Awaitable[None]]]:
    """aiohttp sending Put Block with a container SAS (what a lean hand-written client would cost)."""
    import aiohttp
    from azure.storage.blob import generate_container_sas

    sas = generate_container_sas(ACCOUNT, container, account_key=KEY, permission="rw",
                                 expiry=datetime.now(UTC) + timedelta(hours=2))
    session = aiohttp.ClientSession()

    async def put(blob: str, bid: str, data: bytes) -> None:
        url = f"{endpoint}/{container}/{blob}?comp=block&blockid={quote(bid, safe='')}&{sas}"
        async with session.put(url, data=data, headers={"x-ms-version": "2025-11-05"}) as r:
            await r.read()
            r.raise_for_status()

    return put, session.close


LIBRARIES: dict[str, Callable[[str, str], Awaitable[tuple[Put, Callable[[], Awaitable[None]]]]]] = {
    "azure-storage-blob sync (thread)": sdk_sync,
    "azure-storage-blob aio": sdk_aio,
    "obstore (Azure)": obstore_rows,
    "httpx + SAS (hand-written)": httpx_sas,
    "aiohttp + SAS (hand-written)": aiohttp_sas,
}


async def measure(make: Callable[[str, str], Awaitable[tuple[Put, Callable[[], Awaitable[None]]]]],
                  endpoint: str, container: str, mib: int, small: int) -> dict[str, float]:
    put, close = await make(endpoint, container)
    big = os.urandom(BLOCK)
    tiny = os.urandom(SMALL)
    blocks = mib * (1 << 20) // BLOCK
    out: dict[str, float] = {}
    try:
        await put(f"warmup-{time.monotonic_ns()}", block_id(0), tiny)
        for width in (1, 4):
            name = f"large{width}-{time.monotonic_ns()}"
            sem = asyncio.Semaphore(width)

            async def one(i: int, name: str = name, sem: asyncio.Semaphore = sem) -> None:
                async with sem:
                    await put(name, block_id(i), big)

            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(blocks)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            gib = blocks * BLOCK / (1 << 30)
            out[f"cpu_s_per_gib_{width}"] = cpu / gib
            out[f"mb_s_{width}"] = blocks * BLOCK / 1e6 / wall
        name = f"small-{time.monotonic_ns()}"
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(small):
            await put(name, block_id(i), tiny)
        out["ms_per_put"] = (time.perf_counter() - wall) * 1000 / small
        out["cpu_ms_per_put"] = (time.process_time() - cpu) * 1000 / small
    finally:
        await close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", help="an Azure Blob endpoint with the devstoreaccount1 key (default: start Azurite)")
    ap.add_argument("--mib", type=int, default=128, help="MiB per large run (default 128)")
    ap.add_argument("--small", type=int, default=1500, help="64 KiB Put Blocks per small run (default 1500)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds; each library's best round is shown")
    ap.add_argument("--only", help="comma-separated substrings of library names")
    args = ap.parse_args()
    proc = where = None
    endpoint = args.endpoint
    if endpoint is None:
        proc, endpoint, where = start_azurite()
    try:
        from azure.storage.blob import BlobServiceClient

        container = f"bench{int(time.time())}"
        service = BlobServiceClient(endpoint, credential={"account_name": ACCOUNT, "account_key": KEY})
        service.create_container(container)
        results: dict[str, list[dict[str, float]]] = {}
        for r in range(args.rounds):
            names = list(LIBRARIES)
            names = names[r % len(names):] + names[:r % len(names)]  # alternate the order between rounds
            for name in names:
                if args.only and not any(s in name for s in args.only.split(",")):
                    continue
                try:
                    row = asyncio.run(measure(LIBRARIES[name], endpoint, container, args.mib, args.small))
                except ImportError as exc:
                    print(f"skipped {name}: {exc}", file=sys.stderr)
                    continue
                results.setdefault(name, []).append(row)
        report(results, args)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(str(where), ignore_errors=True)


def report(results: dict[str, list[dict[str, float]]], args: Any) -> None:
    best = {name: {k: (max if k.startswith("mb_s") else min)(r[k] for r in rows) for k in rows[0]}
            for name, rows in results.items()}
    if not best:
        return
    floor_gib = min(b["cpu_s_per_gib_1"] for b in best.values())
    floor_put = min(b["cpu_ms_per_put"] for b in best.values())
    print(f"{args.mib} MiB in 4 MiB blocks, {args.small} x 64 KiB puts, best of {args.rounds} rounds, "
          f"process CPU (time.process_time) on {os.cpu_count()} cores")
    print("| library | CPU s/GiB seq / 4-way | MB/s seq / 4-way | ms per 64 KiB put (wall) | CPU ms per put | "
          "x CPU/GiB | x CPU/put |")
    print("|---|---|---|---|---|---|---|")
    for name, b in best.items():
        print(f"| {name} | {b['cpu_s_per_gib_1']:.2f} / {b['cpu_s_per_gib_4']:.2f} | {b['mb_s_1']:.0f} / "
              f"{b['mb_s_4']:.0f} | {b['ms_per_put']:.2f} | {b['cpu_ms_per_put']:.2f} | "
              f"{b['cpu_s_per_gib_1'] / floor_gib:.1f} | {b['cpu_ms_per_put'] / floor_put:.1f} |")
    print("rerun: .venv/bin/python bench/azure_clients.py [--endpoint URL] [--mib N] [--small N] [--rounds N]")


if __name__ == "__main__":
    main()
