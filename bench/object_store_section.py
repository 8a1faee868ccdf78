"""Section 7 of bench/run: chunkd writing into an object store against the raw client library.

For each emulator (moto for S3, Azurite for Blob), one chunkd node whose byte store is that emulator
takes one file as tus PATCHes and as Service Fabric UploadChunks + CommitUploadSession in ``chunk``
pieces, and in the same rounds obstore (bench/raw_store_upload.py, a process of its own) writes the same
bytes to the same emulator as a multipart / block upload with parts of the same size. The three
alternate (the starting one rotates every round). Figures: MB/s of the upload, CPU-seconds per GiB of the
chunkd process (utime + stime of its process tree from /proc) or of the raw client's process, and the
emulator's CPU per GiB meanwhile; ratios chunkd ÷ raw per round. Every upload is deleted after its
round (outside the figures) so the emulators do not fill memory or disk.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench import flows
from bench.driver import Conn
from bench.peers import BENCH, HOST, ROOT, Chunkd, Peer, _tree

if TYPE_CHECKING:
    from bench.harness import Bench

MiB, GiB = 1 << 20, 1 << 30
SECTION = "7. object store"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # its own
AZURITE_ACCOUNT = "devstoreaccount1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "chunkd-bench", "AWS_SECRET_ACCESS_KEY": "chunkd-bench",
               "AZURE_STORAGE_KEY": AZURITE_KEY}
MOTO = ROOT / ".venv-moto" / "bin" / "moto_server"
AZURITE = ROOT / "tests" / "clients" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
T_TUS, T_SF, T_RAW = "chunkd tus", "chunkd SF UploadChunk", "raw obstore multipart"


@dataclass(frozen=True)
class StorePlan:
    size: int = 256 * MiB
    chunk: int = 8 * MiB
    reps: int = 3


QUICK = StorePlan(size=16 * MiB, chunk=8 * MiB, reps=1)  # S3 parts other than the last are ≥ 5 MiB


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants (threads included), seconds."""
    ticks = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5), after "pid (comm)"
    return ticks / os.sysconf("SC_CLK_TCK")


class Moto(Peer):
    """moto 5.2.5 in server mode (S3, in memory), from scripts/clients/moto.sh."""

    name = "moto"

    def prepare(self) -> None:
        if not MOTO.exists():
            subprocess.run(["bash", str(ROOT / "scripts" / "clients" / "moto.sh")], check=True)

    def command(self) -> list[str]:
        return [str(MOTO), "-H", HOST, "-p", str(self.port)]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def bucket(self, name: str) -> str:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="x", aws_secret_access_key="x").create_bucket(Bucket=name)
        return name

    def storage(self, bucket: str, prefix: str) -> str:
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}&region=us-east-1"


class Azurite(Peer):
    """Azurite 3.35 (Blob) in disk mode, from scripts/clients/azurite.sh (needs npm)."""

    name = "azurite"

    def prepare(self) -> None:
        if not AZURITE.exists():
            subprocess.run(["bash", str(ROOT / "scripts" / "clients" / "azurite.sh")], check=True)
        if not AZURITE.exists():
            raise RuntimeError("Azurite could not be installed (npm missing?)")

    def command(self) -> list[str]:
        return [str(AZURITE), "--blobHost", HOST, "--blobPort", str(self.port), "--location",
                str(self.workdir / "data"), "--loose", "--skipApiVersionCheck", "--disableTelemetry", "--silent"]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}/{AZURITE_ACCOUNT}"

    def bucket(self, name: str) -> str:
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient(self.endpoint, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
                          ).create_container(name)
        return name

    def storage(self, bucket: str, prefix: str) -> str:
        return f"azure://{AZURITE_ACCOUNT}/{bucket}/{prefix}?endpoint={self.endpoint}"


Store = Moto | Azurite


class StoreChunkd(Chunkd):
    """``chunkd serve --no-auth`` with its bytes in an object store and the given metadata store."""

    def __init__(self, workdir: Path, label: str, storage: str, metadata: str = "sqlite") -> None:
        super().__init__(workdir, label=label)
        self.storage, self.metadata = storage, metadata

    def command(self) -> list[str]:
        return [*super().command(), "--storage", self.storage, "--metadata", self.metadata]

    def env(self) -> dict[str, str]:
        return {**super().env(), **CREDENTIALS}

    def files_dirs(self) -> list[Path]:
        return []  # the bytes are in the object store; every flow deletes its upload itself


def tus_once(conn: Conn, src: flows.Source, chunk: int) -> Callable[[], None]:
    """Upload, return the clean-up (DELETE of the finished upload)."""
    path = flows.tus_upload(conn, src, chunk)

    def cleanup() -> None:
        conn.request("DELETE", path, flows.TUS, expect=(204,))
    return cleanup


def sf_once(conn: Conn, src: flows.Source, chunk: int) -> Callable[[], None]:
    key = f"bench/{uuid.uuid4().hex}"
    flows.sf_upload(conn, src, key, chunk)

    def cleanup() -> None:
        conn.request("DELETE", f"/ImageStore/{key}?{flows.SF_Q}", expect=(200,))
    return cleanup


def raw_once(kind: str, store: Store, bucket: str, src: flows.Source, chunk: int) -> tuple[float, float]:
    """(seconds, CPU-seconds) of the raw client's upload, from its own process."""
    proc = subprocess.run([sys.executable, str(BENCH / "raw_store_upload.py"), kind, store.endpoint, bucket,
                           str(src.path), "--chunk", str(chunk)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **CREDENTIALS})
    if proc.returncode:
        raise RuntimeError(f"raw client failed: {proc.stderr[-300:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(got["seconds"]), float(got["cpu"])


def measure_store(bench: Bench, kind: str, title: str, store: Store, plan: StorePlan) -> None:
    """The three uploads of one store, alternating, into the results (and printed as they come)."""
    src = flows.make_source(bench.work / f"stores-{plan.size}.bin", plan.size)
    bucket = store.bucket(f"bench{secrets.token_hex(4)}")
    node = StoreChunkd(bench.work, f"chunkd-{kind}", store.storage(bucket, "chunkd"))
    print(f"starting {node.name} on {title} ...", flush=True)
    node.start()
    assert node.proc is not None and store.proc is not None
    chunkd_pid, store_pid = node.proc.pid, store.proc.pid
    case = f"{title}: {src.size >> 20} MiB in {plan.chunk >> 20} MiB parts"
    r = bench.r
    rate = r.new(SECTION, case, "MB/s", note="chunkd: one node, SQLite metadata, bytes in the emulator before "
                 "each 2xx; raw: obstore multipart / block upload from a process of its own")
    cpu = r.new(SECTION, case + ", CPU of the uploader", "CPU-s/GiB", higher_better=False,
                note="chunkd: utime+stime of the server's process tree; raw: the client process's own CPU")
    emu = r.new(SECTION, case + f", CPU of {store.name}", "CPU-s/GiB", higher_better=False)
    ratio = r.new(SECTION, case + ", chunkd ÷ raw (per round)", "x", note="MB/s ratio > 1: chunkd faster; "
                  "CPU ratio > 1: chunkd costs more per byte")
    gib = src.size / GiB

    def served(upload: Callable[[Conn, flows.Source, int], Callable[[], None]]) -> Callable[[], tuple[float, float]]:
        def run() -> tuple[float, float]:
            conn = node.conn()
            c0 = cpu_seconds(chunkd_pid)
            t0 = time.perf_counter()
            cleanup = upload(conn, src, plan.chunk)
            t = time.perf_counter() - t0
            used = cpu_seconds(chunkd_pid) - c0
            cleanup()
            conn.close()
            return t, used
        return run

    entries: list[tuple[str, Callable[[], tuple[float, float]]]] = [
        (T_TUS, served(tus_once)), (T_SF, served(sf_once)),
        (T_RAW, lambda: raw_once(kind, store, bucket, src, plan.chunk))]
    print(f"{SECTION}: {case}", flush=True)
    try:
        for rep in range(plan.reps):
            got: dict[str, tuple[float, float]] = {}
            for label, fn in entries[rep % 3:] + entries[:rep % 3]:
                e0 = cpu_seconds(store_pid)
                t, used = fn()
                e_used = cpu_seconds(store_pid) - e0
                got[label] = (src.size / t / 1e6, used / gib)
                rate.add(label, got[label][0])
                cpu.add(label, got[label][1])
                emu.add(label, e_used / gib)
                print(f"    {label:24s} {got[label][0]:9,.1f} MB/s  {got[label][1]:6.2f} CPU-s/GiB  "
                      f"({store.name} {e_used / gib:5.2f} CPU-s/GiB)", flush=True)
            raw = got[T_RAW]
            for label in (T_TUS, T_SF):
                ratio.add(f"{label} MB/s ÷ raw", got[label][0] / raw[0])
                if raw[1]:  # a raw upload too short to register a CPU tick has no ratio
                    ratio.add(f"{label} CPU ÷ raw", got[label][1] / raw[1])
    finally:
        node.stop()
    for label in (T_TUS, T_SF):
        cpu_ratio = ratio.values.get(f"{label} CPU ÷ raw")
        print(f"    median {label} ÷ raw: MB/s {statistics.median(ratio.values[f'{label} MB/s ÷ raw']):.2f}x, "
              f"CPU/GiB {statistics.median(cpu_ratio) if cpu_ratio else float('nan'):.2f}x", flush=True)


def run(bench: Bench) -> None:
    """Section 7; a store whose emulator cannot be installed or started is skipped with the reason."""
    plan = QUICK if bench.r.mode == "quick" else StorePlan(reps=bench.plan.reps)
    stores: list[tuple[str, str, Store]] = [("s3", "S3 (moto)", Moto(bench.work)),
                                            ("azure", "Blob (Azurite)", Azurite(bench.work))]
    print(f"starting {', '.join(s.name for _, _, s in stores)} ...", flush=True)
    failed: dict[str, str] = {}

    def start(store: Store) -> None:
        try:
            store.start()
        except Exception as exc:
            failed[store.name] = f"{type(exc).__name__}: {exc}"

    flows.parallel([lambda s=s: start(s) for _, _, s in stores])  # both start while neither is measured
    try:
        for kind, title, store in stores:
            if store.name in failed:
                bench.r.skip(f"{SECTION} on {title}", f"{store.name} could not be installed or started: "
                             f"{failed[store.name]}"[:300])
                continue
            try:
                measure_store(bench, kind, title, store, plan)
            except Exception as exc:
                bench.r.skip(f"the rest of {SECTION} on {title}", f"{type(exc).__name__}: {exc}"[:300])
            finally:
                store.stop()
    finally:
        for _, _, store in stores:
            store.stop()
