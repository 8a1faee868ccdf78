"""tus-js-client 4.3.1 and Uppy (@uppy/core 6.3.1 + @uppy/tus 6.0.0) in Node against a real chunkd server.

The Node packages come from tests/clients/node-tus/package.json (installed by scripts/clients/node-tus.sh);
the .mjs drivers next to it print one JSON line that this test checks against the server.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

NODE_DIR = Path(__file__).parent / "node-tus"
TUS = {"Tus-Resumable": "1.0.0"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(not (NODE_DIR / "node_modules" / "tus-js-client").is_dir(),
                       reason="run scripts/clients/node-tus.sh first"),
]


def node(script: str, *args: str) -> object:
    out = subprocess.run(["node", script, *args], cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    proc = ServerProcess(tmp_path_factory.mktemp("tusjs") / "data").start()
    yield proc  # type: ignore[misc]
    proc.stop()


@pytest.fixture(scope="module")
def auth(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": "Bearer " + server.token()}


def download_sha256(url: str, auth: dict[str, str]) -> str:
    digest = hashlib.sha256()
    with httpx.stream("GET", url, headers=auth, timeout=60) as r:
        assert r.status_code == 200
        for piece in r.iter_bytes():
            digest.update(piece)
    return digest.hexdigest()


Run = Callable[[str], dict[str, object]]


@pytest.fixture
def tusjs(server: ServerProcess, auth: dict[str, str]) -> Run:
    def run(scenario: str) -> dict[str, object]:
        result = node("tusjs.mjs", scenario, server.url + "/files/", auth["Authorization"].split()[1])
        assert isinstance(result, dict)
        return result

    return run


def test_parallel_uploads_use_concatenation(tusjs: Run, auth: dict[str, str]) -> None:
    result = tusjs("parallel")
    url = str(result["url"])
    head = httpx.head(url, headers={**TUS, **auth})
    assert head.headers["upload-concat"].startswith("final;")
    assert len(head.headers["upload-concat"][6:].split()) == 4
    assert head.headers["upload-offset"] == head.headers["upload-length"] == str(result["size"])
    assert download_sha256(url, auth) == result["sha256"]


@pytest.mark.parametrize("scenario", ["creation-with-upload", "deferred", "override"])
def test_upload_modes(tusjs: Run, auth: dict[str, str], scenario: str) -> None:
    result = tusjs(scenario)
    url = str(result["url"])
    head = httpx.head(url, headers={**TUS, **auth})
    assert head.headers["upload-offset"] == head.headers["upload-length"] == str(result["size"])
    assert download_sha256(url, auth) == result["sha256"]


def test_abort_with_termination(tusjs: Run, auth: dict[str, str]) -> None:
    result = tusjs("abort")
    head = httpx.head(str(result["url"]), headers={**TUS, **auth})
    assert head.status_code == 410


def test_uppy_uploads_three_files(server: ServerProcess, auth: dict[str, str]) -> None:
    files = node("uppy.mjs", server.url + "/files/", auth["Authorization"].split()[1])
    assert isinstance(files, list) and len(files) == 3
    for f in files:
        head = httpx.head(f["url"], headers={**TUS, **auth})
        assert head.headers["upload-offset"] == str(f["size"])
        assert "filename" in head.headers["upload-metadata"]  # Uppy sends name, type, filename, filetype
        got = httpx.get(f["url"], headers=auth)
        assert hashlib.sha256(got.content).hexdigest() == f["sha256"]
        assert got.headers["content-disposition"] == f'attachment; filename="{f["name"]}"'
