"""tuspy 1.1.0 against a real chunkd server: 200 MiB in 4 MiB chunks with checksums, stopped halfway and
resumed by a new uploader (in a new process) built from the stored URL.

tuspy lives in its own venv (.venv-tuspy, installed by scripts/clients/tuspy.sh); the driver script below
runs there.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-tuspy" / "bin" / "python"
SIZE = 200 << 20
CHUNK = 4 << 20

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not PYTHON.exists(), reason="run scripts/clients/tuspy.sh first")]

DRIVER = r'''
import json, sys
from tusclient import client
from tusclient.storage.filestorage import FileStorage

endpoint, token, path, store, phase, chunk = sys.argv[1:7]
tus = client.TusClient(endpoint, headers={"Authorization": "Bearer " + token})
storage = FileStorage(store)
uploader = tus.uploader(file_path=path, chunk_size=int(chunk), upload_checksum=True, store_url=True,
                        url_storage=storage, metadata={"filename": "big.bin"}, retries=2, retry_delay=0.2)
if phase == "first":
    size = uploader.get_file_size()
    uploader.upload(stop_at=size // 2)
else:
    stored = storage.get_item(uploader.fingerprinter.get_fingerprint(uploader.get_file_stream()))
    uploader = tus.uploader(file_path=path, url=stored, chunk_size=int(chunk), upload_checksum=True)
    uploader.upload()
print(json.dumps({"url": uploader.url, "offset": uploader.offset}))
'''


def run_phase(server: ServerProcess, token: str, path: Path, store: Path, phase: str) -> dict[str, object]:
    out = subprocess.run([str(PYTHON), "-c", DRIVER, server.url + "/files/", token, str(path), str(store), phase,
                          str(CHUNK)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_tuspy_checksummed_upload_stopped_and_resumed(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = serve()
    token = server.token()
    auth = {"Authorization": "Bearer " + token}
    path = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(SIZE // (8 << 20)):
            block = os.urandom(8 << 20)
            digest.update(block)
            f.write(block)
    store = tmp_path / "urls.json"

    first = run_phase(server, token, path, store, "first")
    url = str(first["url"])
    half = int(str(first["offset"]))
    assert SIZE // 2 <= half < SIZE
    head = httpx.head(url, headers={"Tus-Resumable": "1.0.0", **auth})
    assert head.headers["upload-offset"] == str(half) and head.headers["upload-length"] == str(SIZE)

    second = run_phase(server, token, path, store, "second")
    assert second["url"] == url and second["offset"] == SIZE

    got = hashlib.sha256()
    with httpx.stream("GET", url, headers=auth, timeout=120) as r:
        assert r.status_code == 200
        for piece in r.iter_bytes(1 << 20):
            got.update(piece)
    assert got.hexdigest() == digest.hexdigest()


def test_bench_script_runs(serve) -> None:  # type: ignore[no-untyped-def]
    """bench/tus_upload.py against a running server, tiny, so that the benchmark cannot rot (no figure asserted)."""
    import sys

    server = serve("--no-auth")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "tus_upload.py"), "--size-mib", "16", "--chunk-mib", "4",
                          "--checksum", "--url", server.url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "MB/s" in out.stdout
