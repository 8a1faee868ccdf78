"""How long other requests wait while chunkd checks Put Block bodies (``x-ms-content-crc64`` + ``Content-MD5``).

Usage: ``.venv/bin/python bench/crc_stall.py [--blocks 8] [--block-mib 8] [--src DIR ...]``, or
``... --inproc [--piece-kib 256] [--rounds 9]`` for the same hashing without a server (see :func:`inproc`).
For each source tree (default: this checkout's ``src``; pass several ``--src`` to compare two versions in one run,
e.g. a ``git worktree`` of another commit) it starts ``chunkd serve --no-auth`` with that tree first on ``PYTHONPATH``,
then, while one connection sends ``--blocks`` Put Blocks of ``--block-mib`` MiB with both checksums, a second
*process* sends tiny HEADs (Get Blob Properties) back to back on its own connection. It prints one JSON line per
tree: the HEADs' latency alone (baseline) and during the Put Blocks (median, p99, max, in ms) and the Put Blocks'
MB/s. The checksums are computed before the clock starts; the server's event loop is the only shared thing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing as mp
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.blob_upload import session_url
from bench.local_server import start_chunkd
from chunkd.checksums import crc64


def _blob_url(container: str, name: str) -> str:
    base, _, sas = container.partition("?")
    return f"{base}/{name}?{sas}"


def _probe(url: str, stop: Any, out: Any) -> None:
    """HEAD ``url`` back to back until ``stop`` is set; send the latencies (seconds) back."""
    times: list[float] = []
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            t = time.perf_counter()
            r = client.head(url)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.status_code
    out.send(times)


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"median_ms": round(statistics.median(values) * 1e3, 2),
            "p99_ms": round(values[int(len(values) * 0.99) - 1] * 1e3, 2),
            "max_ms": round(values[-1] * 1e3, 2), "n": len(values)}


def _probe_during(url: str, work: Any) -> tuple[list[float], float]:
    ctx = mp.get_context("spawn")
    stop, (recv, send) = ctx.Event(), ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_probe, args=(url, stop, send))
    proc.start()
    time.sleep(1.5)  # the prober's imports and first requests, off the clock
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    stop.set()
    times = recv.recv()
    proc.join()
    return times, seconds


def run(src: Path, blocks: int, block_mib: int) -> dict[str, object]:
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = f"{src}{os.pathsep}{env_before}" if env_before else str(src)
    data_dir = Path(tempfile.mkdtemp(prefix="crc-stall-"))
    proc, base = start_chunkd(data_dir / "data", "--no-auth")
    if env_before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = env_before
    try:
        container = session_url(base)
        tiny = _blob_url(container, "tiny.txt")
        assert httpx.put(tiny, content=b"hi", headers={"x-ms-blob-type": "BlockBlob"}).status_code == 201
        body = os.urandom(block_mib << 20)
        headers = {"x-ms-content-crc64": base64.b64encode(struct.pack("<Q", crc64(body))).decode(),
                   "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
        big = _blob_url(container, "big.bin")

        def idle() -> None:
            time.sleep(2.0)

        def put_blocks(checked: bool) -> None:
            with httpx.Client(timeout=120) as client:
                for i in range(blocks):
                    block_id = base64.b64encode(f"{i:08d}".encode()).decode()
                    r = client.put(f"{big}&comp=block&blockid={block_id}", content=body,
                                   headers=headers if checked else {})
                    assert r.status_code == 201, r.text

        row: dict[str, object] = {"bench": "crc_stall", "src": str(src), "blocks": blocks, "block_mib": block_mib}
        row["head_alone"] = _ms(_probe_during(tiny, idle)[0])
        for checked in (False, True, False, True):  # interleaved: the machine's load drifts
            during, seconds = _probe_during(tiny, lambda c=checked: put_blocks(c))  # type: ignore[misc]
            key = "crc64_md5" if checked else "unchecked"
            row.setdefault(f"put_block_mb_per_s_{key}", []).append(  # type: ignore[union-attr]
                round(blocks * len(body) / seconds / 1e6, 1))
            row.setdefault(f"head_during_{key}", []).append(_ms(during))  # type: ignore[union-attr]
        return row
    finally:
        proc.terminate()
        proc.wait(10)


def inproc(mib: int, piece_kib: int, rounds: int) -> dict[str, object]:
    """Without a network: one ``mib`` MiB body in ``piece_kib`` KiB pieces through the Blob front end's
    CheckedBody (MD5 on a worker thread, CRC-64 inline) against both hashes inline on each piece (the previous
    code), in one process, alternating. Reported: CPU time of the event-loop thread per body (``time.thread_time``:
    what other connections wait for, and robust against other load on the machine) and the longest gap a ticker
    task on the loop saw."""
    import asyncio

    from chunkd.protocols._blob_wire import CheckedBody

    body = os.urandom(mib << 20)
    pieces = [body[i:i + (piece_kib << 10)] for i in range(0, len(body), piece_kib << 10)]
    headers = {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode(),
               "x-ms-content-crc64": base64.b64encode(struct.pack("<Q", crc64(body))).decode()}

    async def source() -> Any:
        for piece in pieces:
            yield piece
            await asyncio.sleep(0)  # the next piece arrives in a later loop round, as from a socket

    async def inline() -> None:
        md5, crc = hashlib.md5(usedforsecurity=False), 0
        async for piece in source():
            md5.update(piece)
            crc = crc64(piece, crc)
        assert md5.digest() == base64.b64decode(headers["content-md5"])

    async def checked() -> None:
        async for _ in CheckedBody(source(), len(body), headers):
            pass

    async def measure(consume: Any) -> tuple[float, float]:
        # the loop thread's CPU without a ticker (a busy ticker would fill the loop's idle time), then the
        # longest gap with one
        cpu = time.thread_time()
        await consume()
        cpu = time.thread_time() - cpu
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.ensure_future(ticker())
        await consume()
        done.set()
        await tick
        return cpu, max(gaps)

    async def all_rounds() -> dict[str, object]:
        out: dict[str, list[tuple[float, float]]] = {"inline": [], "md5_thread_crc_inline": []}
        for _ in range(rounds):
            out["inline"].append(await measure(inline))
            out["md5_thread_crc_inline"].append(await measure(checked))
        row: dict[str, object] = {"bench": "crc_stall_inproc", "mib": mib, "piece_kib": piece_kib, "rounds": rounds}
        for name, values in out.items():
            row[f"{name}_loop_cpu_ms_median"] = round(statistics.median(v[0] for v in values) * 1e3, 1)
            row[f"{name}_max_gap_ms_median"] = round(statistics.median(v[1] for v in values) * 1e3, 2)
        return row

    return asyncio.run(all_rounds())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--block-mib", type=int, default=8)
    ap.add_argument("--src", type=Path, action="append", help="a source tree holding chunkd/ (repeatable)")
    ap.add_argument("--inproc", action="store_true", help="only the in-process comparison (no server)")
    ap.add_argument("--piece-kib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    if args.inproc:
        print(json.dumps(inproc(args.block_mib, args.piece_kib, args.rounds)), flush=True)
        return
    for src in args.src or [Path(__file__).resolve().parents[1] / "src"]:
        print(json.dumps(run(src.resolve(), args.blocks, args.block_mib)), flush=True)


if __name__ == "__main__":
    main()
