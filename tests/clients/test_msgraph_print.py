"""msgraph-beta-sdk 1.66.0 + msgraph-core LargeFileUploadTask against a real chunkd server (issue 3)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-msgraph" / "bin" / "python"
SCRIPT = Path(__file__).with_name("msgraph_print_client.py")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not PYTHON.exists(), reason="run scripts/clients/msgraph.sh to install msgraph")]


def _add_printer(server) -> str:  # type: ignore[no-untyped-def]
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "chunkd"), "printers", "add", "Office",
                          "--data-dir", str(server.data_dir)], check=True, capture_output=True, text=True)
    return out.stdout.split()[-1]


@pytest.mark.parametrize("version", ["beta"])
def test_sdk_uploads_24_mib_with_large_file_upload_task(serve, tmp_path: Path, version: str) -> None:
    server = serve()
    printer_id = _add_printer(server)  # registered while the server runs
    token = server.token()
    out = tmp_path / "result.json"
    size, chunk = 24 << 20, 5 << 20  # LargeFileUploadTask's default chunk; it sends off-by-one 5 MiB + 1 slices
    proc = subprocess.run([str(PYTHON), str(SCRIPT), f"{server.url}/{version}", token, printer_id, str(size),
                           str(chunk), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr + server.log()
    assert "Error uploading chunk" not in proc.stderr, proc.stderr  # the task swallows errors: check its log
    got = json.loads(out.read_text())
    assert got["result_id"] == got["document"] and got["result_size"] == size
    assert got["state"] == "completed" and got["doc_size"] == size and got["doc_content_type"] == "application/pdf"

    puts = [r for r in got["requests"] if r["method"] == "PUT"]
    assert puts and all(not r["authorization"] for r in puts)  # the uploadUrl carries its own credential
    ranges = [r["content_range"] for r in puts]
    assert ranges[1] == f"bytes {chunk}-{2 * chunk}/{size}"  # the SDK's max+1-byte slice, accepted
    assert ranges[-1] == ranges[-2]  # the final range is re-sent after the 201: answered 201 again

    base = f"{server.url}/{version}/print/printers/{printer_id}/jobs/{got['job']}/documents/{got['document']}"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        body = c.get(base + "/$value")
        assert body.status_code == 200 and body.headers["content-type"].startswith("application/pdf")
        assert hashlib.sha256(body.content).hexdigest() == got["sha256"]
        part = c.get(base + "/$value", headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == body.content[1000:2000]
