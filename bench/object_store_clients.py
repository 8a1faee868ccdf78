"""CPU cost of S3 client libraries inside the uploading process, against moto in server mode.

What chunkd's S3 byte store does most, measured per library in this one process (moto runs in its own):

* ``put64k``  -- one PUT of a 64 KiB object (a tus append of 64 KiB is one piece, one PUT):
  wall ms and CPU ms per PUT;
* ``upload``  -- a multipart upload in 8 MiB parts fed by 1 MiB writes (a large piece of unknown length):
  CPU-seconds per GiB;
* ``get``     -- a ranged GET streamed in 1 MiB pieces (a download; coalescing small pieces at commit):
  CPU-seconds per GiB;
* ``copy``    -- one UploadPartCopy of a 5 MiB range (server-side assembly): wall and CPU ms per call
  (only the libraries that have per-part calls).

Rounds alternate between the libraries and the median of ``--reps`` rounds is printed, with each
library's ratio to obstore. CPU is ``time.process_time()`` of this process (every thread, including
obstore's Rust runtime), so it is what the library would cost inside chunkd.

Run (installs moto into .venv-moto if needed, starts it on a free port, stops it again)::

    bash scripts/clients/moto.sh
    uv pip install --python .venv/bin/python -e '.[s3]' aiobotocore   # aiobotocore optional: its row
    .venv/bin/python bench/object_store_clients.py                 # ~2 min: 96 MiB per upload/get, 400 PUTs
    .venv/bin/python bench/object_store_clients.py --mib 16 --puts 50 --reps 1   # a quick look
    .venv/bin/python bench/object_store_clients.py --endpoint http://127.0.0.1:9000 --bucket b  # another store
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MOTO = ROOT / ".venv-moto" / "bin" / "moto_server"
PART = 8 << 20
WRITE = 1 << 20
KIB64 = 64 << 10
COPY = 5 << 20

Op = Callable[[], Awaitable[None]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    if not MOTO.exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "clients" / "moto.sh")], check=True)
    port = free_port()
    proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("moto_server did not start")


class Lib:
    """One client library with the four operations; ``key`` gives fresh object names."""

    name = ""

    def __init__(self, endpoint: str, bucket: str, data: bytes) -> None:
        self.endpoint, self.bucket, self.data = endpoint, bucket, data
        self.n = 0

    def key(self, what: str) -> str:
        self.n += 1
        return f"bench/{self.name}/{what}-{self.n}"

    async def put64k(self, count: int) -> None: ...
    async def upload(self, size: int) -> str: ...
    async def get(self, key: str, size: int) -> None: ...
    async def copy(self, src: str, count: int) -> None: ...

    def parts(self, size: int) -> list[bytes]:
        """Parts as a piece writer builds them: 1 MiB writes appended to a buffer until it holds PART."""
        out: list[bytes] = []
        buf = bytearray()
        for pos in range(0, size, WRITE):
            buf += memoryview(self.data)[pos % PART:pos % PART + WRITE]
            if len(buf) >= PART:
                out.append(bytes(buf))
                buf.clear()
        if buf:
            out.append(bytes(buf))
        return out


class Obstore(Lib):
    def __init__(self, endpoint: str, bucket: str, data: bytes, unsigned: bool) -> None:
        super().__init__(endpoint, bucket, data)
        from obstore.store import S3Store

        self.name = "obstore" + (" (unsigned payload)" if unsigned else "")
        self.store = S3Store(bucket, endpoint=endpoint, region="us-east-1", unsigned_payload=unsigned,
                             client_options={"allow_http": True})

    async def put64k(self, count: int) -> None:
        import obstore

        body = self.data[:KIB64]
        for _ in range(count):
            await obstore.put_async(self.store, self.key("small"), body)

    async def upload(self, size: int) -> str:
        import obstore

        key = self.key("big")
        w = obstore.open_writer_async(self.store, key, buffer_size=PART, max_concurrency=2)
        for pos in range(0, size, WRITE):
            await w.write(memoryview(self.data)[pos % PART:pos % PART + WRITE])
        await w.close()
        return key

    async def get(self, key: str, size: int) -> None:
        import obstore

        got = 0
        result = await obstore.get_async(self.store, key, options={"range": (0, size)})
        async for chunk in result.stream(min_chunk_size=WRITE):
            got += len(chunk)
        assert got == size


def boto_config(lean: bool) -> Any:
    from botocore.config import Config

    if not lean:
        return Config(max_pool_connections=16)
    return Config(max_pool_connections=16, request_checksum_calculation="when_required",
                  response_checksum_validation="when_required", s3={"payload_signing_enabled": False})


class Boto3(Lib):
    def __init__(self, endpoint: str, bucket: str, data: bytes, lean: bool) -> None:
        super().__init__(endpoint, bucket, data)
        import boto3

        self.name = "boto3 " + ("lean" if lean else "defaults")
        self.s3 = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                                 config=boto_config(lean))

    async def put64k(self, count: int) -> None:
        body = self.data[:KIB64]
        for _ in range(count):  # chunkd would run these in a worker thread: the cost is the same
            self.s3.put_object(Bucket=self.bucket, Key=self.key("small"), Body=body)

    async def upload(self, size: int) -> str:
        key = self.key("big")
        up = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        done = []
        for i, part in enumerate(self.parts(size), 1):
            r = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=up, PartNumber=i, Body=part)
            done.append({"PartNumber": i, "ETag": r["ETag"]})
        self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up, MultipartUpload={"Parts": done})
        return key

    async def get(self, key: str, size: int) -> None:
        body = self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{size - 1}")["Body"]
        got = 0
        for chunk in body.iter_chunks(WRITE):
            got += len(chunk)
        assert got == size

    async def copy(self, src: str, count: int) -> None:
        key = self.key("copy")
        up = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        for i in range(1, count + 1):
            self.s3.upload_part_copy(Bucket=self.bucket, Key=key, UploadId=up, PartNumber=i,
                                     CopySource={"Bucket": self.bucket, "Key": src},
                                     CopySourceRange=f"bytes=0-{COPY - 1}")
        self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up)


class Aiobotocore(Lib):
    name = "aiobotocore lean"

    def __init__(self, endpoint: str, bucket: str, data: bytes) -> None:
        super().__init__(endpoint, bucket, data)
        self.client: Any = None
        self._ctx: Any = None

    async def open(self) -> None:
        from aiobotocore.session import get_session

        self._ctx = get_session().create_client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                                config=boto_config(True))
        self.client = await self._ctx.__aenter__()

    async def close(self) -> None:
        await self._ctx.__aexit__(None, None, None)

    async def put64k(self, count: int) -> None:
        body = self.data[:KIB64]
        for _ in range(count):
            await self.client.put_object(Bucket=self.bucket, Key=self.key("small"), Body=body)

    async def upload(self, size: int) -> str:
        key = self.key("big")
        up = (await self.client.create_multipart_upload(Bucket=self.bucket, Key=key))["UploadId"]
        done = []
        for i, part in enumerate(self.parts(size), 1):
            r = await self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=up, PartNumber=i, Body=part)
            done.append({"PartNumber": i, "ETag": r["ETag"]})
        await self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up,
                                                    MultipartUpload={"Parts": done})
        return key

    async def get(self, key: str, size: int) -> None:
        r = await self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{size - 1}")
        got = 0
        async with r["Body"] as body:
            async for chunk in body.iter_chunks(WRITE):
                got += len(chunk)
        assert got == size


async def measure(op: Op) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await op()
    return time.perf_counter() - wall, time.process_time() - cpu


async def one_round(lib: Lib, r: dict[str, list[float]], args: argparse.Namespace, size: int, src: str) -> None:
    wall, cpu = await measure(partial(lib.put64k, args.puts))
    r.setdefault("put ms", []).append(wall / args.puts * 1e3)
    r.setdefault("put cpu ms", []).append(cpu / args.puts * 1e3)
    keys: list[str] = []

    async def up() -> None:
        keys.append(await lib.upload(size))

    wall, cpu = await measure(up)
    r.setdefault("upload MB/s", []).append(size / wall / 1e6)
    r.setdefault("upload cpu s/GiB", []).append(cpu / size * (1 << 30))
    wall, cpu = await measure(partial(lib.get, keys[0], size))
    r.setdefault("get MB/s", []).append(size / wall / 1e6)
    r.setdefault("get cpu s/GiB", []).append(cpu / size * (1 << 30))
    if type(lib).copy is not Lib.copy:
        n = 20
        wall, cpu = await measure(partial(lib.copy, src, n))
        r.setdefault("copy ms", []).append(wall / n * 1e3)
        r.setdefault("copy cpu ms", []).append(cpu / n * 1e3)


async def run(args: argparse.Namespace, endpoint: str) -> None:
    import boto3

    admin = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    try:
        admin.create_bucket(Bucket=args.bucket)
    except admin.exceptions.BucketAlreadyOwnedByYou:
        pass
    data = os.urandom(PART + WRITE)
    libs: list[Lib] = [Obstore(endpoint, args.bucket, data, False), Obstore(endpoint, args.bucket, data, True),
                       Boto3(endpoint, args.bucket, data, False), Boto3(endpoint, args.bucket, data, True)]
    aio: Aiobotocore | None = None
    if importlib.util.find_spec("aiobotocore") is not None:
        aio = Aiobotocore(endpoint, args.bucket, data)
        await aio.open()
        libs.append(aio)
    else:
        print("# aiobotocore is not installed: its row is left out")
    size = args.mib << 20
    src = await libs[3].upload(COPY)  # the source of the copy measurements
    rows: dict[str, dict[str, list[float]]] = {lib.name: {} for lib in libs}
    for rep in range(args.reps):
        order = libs[rep % len(libs):] + libs[:rep % len(libs)]
        for lib in order:
            await one_round(lib, rows[lib.name], args, size, src)
    if aio is not None:
        await aio.close()
    print_table(rows, args)


def print_table(rows: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    cols = ["put ms", "put cpu ms", "upload cpu s/GiB", "upload MB/s", "get cpu s/GiB", "get MB/s", "copy ms",
            "copy cpu ms"]
    med = {name: {c: statistics.median(v) for c, v in r.items()} for name, r in rows.items()}
    base = med["obstore (unsigned payload)"]
    print(f"# {args.mib} MiB per upload/get, {args.puts} PUTs of 64 KiB, median of {args.reps} rounds; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print("| library | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, m in med.items():
        cells = []
        for c in cols:
            if c not in m:
                cells.append("-")
            elif "cpu" in c and c in base and name != "obstore (unsigned payload)":
                cells.append(f"{m[c]:.2f} ({m[c] / base[c]:.1f}x)")
            else:
                cells.append(f"{m[c]:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("(x: CPU relative to obstore with unsigned payload)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mib", type=int, default=96, help="MiB per multipart upload and per GET")
    p.add_argument("--puts", type=int, default=400, help="64 KiB PUTs per round")
    p.add_argument("--reps", type=int, default=3, help="rounds (median reported)")
    p.add_argument("--endpoint", help="an S3 endpoint to use instead of starting moto")
    p.add_argument("--bucket", default="bench-clients")
    args = p.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    proc = None
    endpoint = args.endpoint
    if endpoint is None:
        proc, endpoint = start_moto()
    try:
        asyncio.run(run(args, endpoint))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
