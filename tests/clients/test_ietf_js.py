"""tus-js-client 4.3.1 in its IETF-draft modes (``protocol: 'ietf-draft-03'`` and ``'ietf-draft-05'``) in Node
against a real chunkd server: uploads in several appends, creation with data, a stopped upload that a new client
resumes from the stored upload URL, and one whose connections a proxy keeps cutting.

tus-js-client's source (lib/upload.js, ``openRequest``) sends ``Upload-Draft-Interop-Version: 5`` for
'ietf-draft-03' and ``6`` for 'ietf-draft-05'; the driver records what it sent and this test checks it. The
driver is tests/clients/node-tus/ietf.mjs (installed with scripts/clients/node-tus.sh).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.tcpproxy import TcpProxy
from tests.serverproc import ServerProcess

NODE_DIR = Path(__file__).parent / "node-tus"
INTEROP = {"ietf-draft-03": "5", "ietf-draft-05": "6"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(not (NODE_DIR / "node_modules" / "tus-js-client").is_dir(),
                       reason="run scripts/clients/node-tus.sh first"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    proc = ServerProcess(tmp_path_factory.mktemp("ietfjs") / "data").start()
    yield proc  # type: ignore[misc]
    proc.stop()


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return server.token()


def drive(scenario: str, protocol: str, endpoint: str, token: str) -> dict[str, object]:
    out = subprocess.run(["node", "ietf.mjs", scenario, protocol, endpoint, token], cwd=NODE_DIR,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    assert result["versions"] == [INTEROP[protocol]]
    return result


def check_stored(server: ServerProcess, token: str, result: dict[str, object], protocol: str) -> None:
    """The upload is complete by the draft (HEAD in the client's own version) and holds the client's bytes."""
    url = server.url + "/files/" + str(result["url"]).rsplit("/", 1)[1]
    auth = {"Authorization": "Bearer " + token}
    head = httpx.head(url, headers={**auth, "Upload-Draft-Interop-Version": INTEROP[protocol]})
    assert head.status_code == 204
    assert head.headers["upload-complete"] == "?1"
    assert head.headers["upload-offset"] == str(result["size"])
    got = httpx.get(url, headers=auth, timeout=60)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == result["sha256"]


@pytest.mark.parametrize("protocol", list(INTEROP))
@pytest.mark.parametrize("scenario", ["chunks", "creation-with-upload"])
def test_uploads(server: ServerProcess, token: str, scenario: str, protocol: str) -> None:
    result = drive(scenario, protocol, server.url + "/files/", token)
    check_stored(server, token, result, protocol)
    requests = result["requests"]
    assert isinstance(requests, list)
    offsets = [int(r[2]) for r in requests]
    assert offsets == sorted(offsets)  # an offset never goes backwards
    if scenario == "creation-with-upload":
        assert requests[0][:2] == ["POST", 201] and offsets[0] == 256 * 1024


@pytest.mark.parametrize("protocol", list(INTEROP))
def test_stopped_upload_resumes_from_its_url(server: ServerProcess, token: str, protocol: str) -> None:
    result = drive("resume", protocol, server.url + "/files/", token)
    check_stored(server, token, result, protocol)
    requests = result["requests"]
    assert isinstance(requests, list)
    method, status, offset = requests[0]
    assert (method, status) == ("HEAD", 204)
    assert 512 * 1024 <= int(offset) < int(str(result["size"]))  # resumed, not restarted
    assert all(r[0] != "POST" for r in requests)


@pytest.mark.parametrize("protocol", list(INTEROP))
def test_upload_survives_cut_connections(server: ServerProcess, token: str, protocol: str) -> None:
    proxy = TcpProxy(server.port, drop_every=12)
    try:
        result = drive("flaky", protocol, f"http://127.0.0.1:{proxy.port}/files/", token)
    finally:
        proxy.close()
    check_stored(server, token, result, protocol)
    assert proxy.drops > 0
    requests = result["requests"]
    assert isinstance(requests, list)
    assert any(r[0] == "HEAD" for r in requests)  # a retry asked for the offset first


@pytest.mark.parametrize("protocol", list(INTEROP))
def test_completion_whose_answer_was_lost(server: ServerProcess, token: str, protocol: str) -> None:
    """The server completes the upload, the client never hears it, retries: HEAD, then (interop 5 has no
    Upload-Length on HEAD, so the client cannot tell it is done) an empty completing append, which succeeds."""
    result = drive("lost-completion", protocol, server.url + "/files/", token)
    check_stored(server, token, result, protocol)
    requests = result["requests"]
    assert isinstance(requests, list)
    after = requests[[r[0] for r in requests].index("HEAD"):]
    assert after[0][1:] == [204, str(result["size"])]  # the retry learnt the whole upload is in
    assert all(r[1] < 300 for r in after)
