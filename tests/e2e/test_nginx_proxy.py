"""deploy/nginx.conf in front of a real ``chunkd serve --trust-proxy``: HTTPS at nginx, a tus upload of a few
MiB in chunks larger than nginx's default body limit, the Location built from nginx's forwarded headers (and a
client's own ``Forwarded`` header overridden), the bytes read back through the proxy. Debian's nginx-light comes
from scripts/clients/nginx.sh; without it the test is skipped."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from chunkd.auth.permissions import ALL_ROLES
from chunkd.auth.tokens import issue_token, load_or_create_secret
from tests.serverproc import ServerProcess, free_port

pytestmark = pytest.mark.slow
SNIPPET = Path(__file__).parents[2] / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TUS = {"Tus-Resumable": "1.0.0"}


def render(snippet: str, port: int, upstream: int, cert: Path, key: Path) -> str:
    """The deployed snippet with this test's ports and certificate (nothing else changed)."""
    for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
                     ("server 127.0.0.1:19080;", f"server 127.0.0.1:{upstream};"),
                     ("/etc/ssl/chunkd/fullchain.pem", str(cert)), ("/etc/ssl/chunkd/privkey.pem", str(key))):
        assert old in snippet, old
        snippet = snippet.replace(old, new)
    return snippet


@pytest.fixture(scope="module")
def chunkd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("behind-nginx") / "data", args=["--trust-proxy"]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def proxy(chunkd: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext]]:
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (scripts/clients/nginx.sh)")
    work = tmp_path_factory.mktemp("nginx")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(work / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(work / "key.pem"))
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    port = free_port()
    site = render(SNIPPET.read_text(), port, chunkd.port, work / "cert.pem", work / "key.pem")
    user = "user root;\n" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {work}/nginx.pid;\nerror_log {work}/error.log warn;\n"
        f"events {{ worker_connections 256; }}\nhttp {{\n access_log off;\n client_body_temp_path {work}/body;\n"
        f" proxy_temp_path {work}/proxy;\n{site}\n}}\n")
    nginx = subprocess.Popen([NGINX, "-e", str(work / "error.log"), "-p", str(work), "-c", str(work / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(work / "ca.pem"))
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                httpx.get(base + "/", verify=trust, timeout=1)
                break
            except httpx.TransportError:
                if nginx.poll() is not None or time.monotonic() > deadline:
                    log = (work / "error.log").read_text() if (work / "error.log").exists() else ""
                    pytest.fail(f"nginx did not start: {log}")
                time.sleep(0.05)
        yield base, trust
    finally:
        nginx.terminate()
        nginx.wait(10)


def test_tus_upload_through_nginx(chunkd: ServerProcess, proxy: tuple[str, ssl.SSLContext]) -> None:
    base, ca = proxy
    token = issue_token(load_or_create_secret(chunkd.data_dir), roles=list(ALL_ROLES))
    data = os.urandom((6 << 20) + 11)
    piece = 3 << 20  # over nginx's 1 MiB default client_max_body_size
    with httpx.Client(base_url=base, verify=ca, timeout=60,
                      headers={"Authorization": f"Bearer {token}", **TUS}) as client:
        created = client.post("/files/", headers={"Upload-Length": str(len(data)),
                                                  "Forwarded": "host=evil.example;proto=http"})
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        assert location.startswith(f"{base}/files/"), location  # nginx's headers, not the client's
        for offset in range(0, len(data), piece):
            r = client.patch(location, content=data[offset:offset + piece],
                             headers={"Upload-Offset": str(offset),
                                      "Content-Type": "application/offset+octet-stream"})
            assert r.status_code == 204, r.text
            assert int(r.headers["upload-offset"]) == min(len(data), offset + piece)
        assert client.head(location).headers["upload-offset"] == str(len(data))
        back = client.get(location)
        assert back.status_code == 200 and back.content == data
