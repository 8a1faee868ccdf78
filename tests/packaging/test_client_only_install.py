"""``chunkd.client`` in an environment that holds only httpx and chunkd installed with ``--no-deps`` (the
documented client-only install): it imports and uploads a file to a real ``chunkd serve`` process, and none of
the server's dependencies is importable there."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chunkd.auth.permissions import ALL_ROLES
from chunkd.auth.tokens import issue_token, load_or_create_secret
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]

SCRIPT = r"""
import importlib.util, json, sys
from chunkd.client import Uploader, UploadOptions
server_deps = [m for m in ("starlette", "uvicorn", "sqlalchemy", "pydantic", "typer", "rich", "jwt")
               if importlib.util.find_spec(m) is not None]
url, token, path = sys.argv[1:4]
with Uploader(token=token, options=UploadOptions(parallel=2, chunk_size=256 << 10, resume=False)) as up:
    result = up.upload(path, url)
print(json.dumps({"server_deps": server_deps, "sha256": result.sha256, "size": result.size}))
"""


def _uv(*args: str) -> None:
    subprocess.run(["uv", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("uv") is None:
        pytest.skip("uv is not installed (scripts/test installs it)")
    venv = tmp_path_factory.mktemp("client-venv") / "venv"
    _uv("venv", "-q", str(venv), "--python", sys.executable)
    python = str(venv / "bin" / "python")
    _uv("pip", "install", "-q", "--python", python, "--no-deps", "-e", str(ROOT))
    try:  # uv's cache already holds httpx and its dependencies (the main venv has them): no download
        _uv("pip", "install", "-q", "--python", python, "--offline", "httpx")
    except subprocess.CalledProcessError:
        _uv("pip", "install", "-q", "--python", python, "httpx")
    return venv


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("client-only") / "data").start()
    yield proc
    proc.stop()


def test_client_uploads_with_httpx_alone(client_venv: Path, server: ServerProcess, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4: several chunks, a short last one
    source = tmp_path / "report.bin"
    source.write_bytes(data)
    token = issue_token(load_or_create_secret(server.data_dir), roles=list(ALL_ROLES))
    url = f"{server.url}/ImageStore/client-only/report.bin"
    out = subprocess.run([str(client_venv / "bin" / "python"), "-c", SCRIPT, url, token, str(source)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["server_deps"] == []  # only httpx (and what it needs) is installed
    assert row["size"] == len(data) and row["sha256"] == hashlib.sha256(data).hexdigest()
    stored = httpx.get(f"{url}/$/Content", params={"api-version": "6.0"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert stored.status_code == 200 and stored.content == data
