"""The raw client library's side of bench section 7: one file written to an object store as a multipart
(S3) or block (Azure Blob) upload in parts of ``--chunk`` bytes with obstore, in a process of its own, so
its CPU is only its own.

obstore is the library chunkd's S3 store moves its bytes with (bench/README.md, "Object-store client
libraries") and the cheapest Azure client measured there; its writer sends the parts as UploadPart /
Put Block and completes with CompleteMultipartUpload / Put Block List. Prints one JSON line:
``{"seconds": wall time of the upload, "cpu": CPU-seconds of this process meanwhile (every thread,
obstore's runtime included)}``; the object is deleted afterwards (outside both figures).

    python bench/raw_store_upload.py s3 http://127.0.0.1:PORT BUCKET FILE --chunk 8388608
    python bench/raw_store_upload.py azure http://127.0.0.1:PORT/devstoreaccount1 CONTAINER FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any

AZURITE_ACCOUNT = "devstoreaccount1"


def open_store(kind: str, endpoint: str, bucket: str) -> Any:
    from obstore.store import AzureStore, S3Store

    if kind == "s3":  # unsigned payload, as chunkd's S3 store sends it
        return S3Store(bucket, endpoint=endpoint, region="us-east-1", unsigned_payload=True,
                       client_options={"allow_http": True})
    return AzureStore(container_name=bucket, account_name=AZURITE_ACCOUNT, access_key=os.environ["AZURE_STORAGE_KEY"],
                      endpoint=endpoint, client_options={"allow_http": True})


async def upload(store: Any, path: str, fd: int, size: int, chunk: int) -> None:
    import obstore

    w = obstore.open_writer_async(store, path, buffer_size=chunk, max_concurrency=1)
    for pos in range(0, size, chunk):
        await w.write(os.pread(fd, min(chunk, size - pos), pos))
    await w.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("kind", choices=("s3", "azure"))
    ap.add_argument("endpoint")
    ap.add_argument("bucket", help="S3 bucket or Azure container (must exist)")
    ap.add_argument("file")
    ap.add_argument("--chunk", type=int, default=8 << 20)
    args = ap.parse_args()
    import obstore

    store = open_store(args.kind, args.endpoint, args.bucket)
    path = f"raw/{uuid.uuid4().hex}"
    await obstore.put_async(store, "raw/warm-up", b"x")  # connection and credentials set up outside the figures
    fd = os.open(args.file, os.O_RDONLY)
    size = os.fstat(fd).st_size
    t0, c0 = time.perf_counter(), time.process_time()
    await upload(store, path, fd, size, args.chunk)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    os.close(fd)
    meta = await obstore.head_async(store, path)
    if meta["size"] != size:
        raise SystemExit(f"the store holds {meta['size']} bytes, not {size}")
    await obstore.delete_async(store, path)
    print(json.dumps({"seconds": seconds, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    time.sleep(0.05)  # obstore's runtime threads finish before finalization (see chunkd.storage._s3_config)
