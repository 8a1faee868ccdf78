"""sfctl 11.2.1, the real Service Fabric CLI (its own venv: scripts/clients/sfctl.sh), against `chunkd serve`.

Two runs of the same scenario (cluster select, application upload of a nested package, store stat,
store root-info, store delete), each checked through the REST API: plain HTTP with --no-auth; and HTTPS
with client certificates, using exactly the files and commands `chunkd certs init` prints, with two server
workers (admin certificate, read-only certificate, no certificate); that run also drives the
azure-servicefabric SDK with a session certificate.

sfctl 11.2.1 quirk: msrest 0.7.1 passes ``verify=True`` with every request, which overrides the ``--ca`` that
sfctl puts on its session, so a private CA must also be in ``REQUESTS_CA_BUNDLE`` (docs/tls.md).
"""

from __future__ import annotations

import json
import os
import shlex
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import ServerProcess, free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SFCTL = REPO / ".venv-sfctl" / "bin" / "sfctl"
APP = "MyApp"


# -- helpers ----------------------------------------------------------------------------------------------


class Sfctl:
    """Runs the real sfctl with its own HOME (its ~/.sfctl config) and a controlled CA environment."""

    def __init__(self, home: Path, ca_bundle: Path | None = None) -> None:
        if not SFCTL.exists():
            pytest.fail(f"{SFCTL} is missing: run scripts/clients/sfctl.sh (scripts/test does)")
        home.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
        self.env.update(HOME=str(home), PYTHONWARNINGS="ignore")
        if ca_bundle is not None:
            self.env["REQUESTS_CA_BUNDLE"] = str(ca_bundle)

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(SFCTL), *args], env=self.env, capture_output=True, text=True, timeout=120)
        if ok and proc.returncode != 0:
            raise AssertionError(f"sfctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        if not ok and proc.returncode == 0:
            raise AssertionError(f"sfctl {' '.join(args)} should have failed:\n{proc.stdout[-2000:]}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)


def make_package(root: Path, name: str = APP) -> dict[str, bytes]:
    """A small application package with nested folders; returns {store path with '/': bytes}."""
    files = {
        "ApplicationManifest.xml": b'<ApplicationManifest ApplicationTypeName="MyAppType"/>\n',
        "Svc/ServiceManifest.xml": b'<ServiceManifest Name="Svc"/>\n',
        "Svc/Code/app.bin": os.urandom(200_000),
        "Svc/Code/lib/helper.dll": os.urandom(3_000),
        "Svc/Config/Settings.xml": b"<Settings/>\n",
        "Svc/Data/empty.txt": b"",
    }
    for rel, data in files.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {f"{name}/{rel}": data for rel, data in files.items()}


def expected_store(files: dict[str, bytes]) -> dict[str, int]:
    """What sfctl's upload leaves in the store: every file plus an empty `_.dir` marker in every folder."""
    store = {path: len(data) for path, data in files.items()}
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            store["/".join(parts[:i]) + "/_.dir"] = 0
    return store


def store_tree(rest: httpx.Client, folder: str) -> dict[str, int]:
    """{path: size} of every file under ``folder``, read with GetImageStoreContent (api 6.2), recursively."""
    r = rest.get(f"/ImageStore/{folder}", params={"api-version": "6.2"})
    if r.status_code == 404:
        return {}
    assert r.status_code == 200, r.text
    body = r.json()
    tree = {f["StoreRelativePath"].replace("\\", "/"): int(f["FileSize"]) for f in body["StoreFiles"]}
    for sub in body["StoreFolders"]:
        sub_tree = store_tree(rest, sub["StoreRelativePath"].replace("\\", "/"))
        assert int(sub["FileCount"]) == len(sub_tree)
        tree.update(sub_tree)
    return tree


def exercise(sfctl: Sfctl, rest: httpx.Client, packages: Path) -> None:
    """Upload, inspect and delete an application package with sfctl; check each step over REST."""
    files = make_package(packages)
    sfctl.run("application", "upload", "--path", str(packages / APP), "--timeout", "120")
    assert store_tree(rest, APP) == expected_store(files)
    assert rest.get(f"/ImageStore/{APP}/Svc/Code/app.bin/$/Content", params={"api-version": "6.0"}).content \
        == files[f"{APP}/Svc/Code/app.bin"]

    stat = sfctl.json("store", "stat", "--content-path", f"{APP}/Svc/Code/app.bin")
    assert [(f["storeRelativePath"], f["fileSize"]) for f in stat["storeFiles"]] == \
        [(f"{APP}\\Svc\\Code\\app.bin", "200000")]
    root = sfctl.json("store", "root-info")
    assert {(f["storeRelativePath"], f["fileCount"]) for f in root["storeFolders"]} == \
        {(APP, str(len(expected_store(files))))}

    sfctl.run("store", "delete", "--content-path", APP)
    assert store_tree(rest, APP) == {}
    assert rest.get(f"/ImageStore/{APP}", params={"api-version": "6.2"}).status_code == 404


def client_context(ca: Path, cert: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert))
    return ctx


def startup_line(server: ServerProcess) -> str:
    return next(line for line in server.log().splitlines() if line.startswith("chunkd listening on"))


# -- the two runs -----------------------------------------------------------------------------------------


def test_sfctl_over_http_without_auth(serve, tmp_path: Path) -> None:
    server = serve("--no-auth")
    line = startup_line(server)
    for part in (f"http://127.0.0.1:{server.port}", f"data={server.data_dir.resolve()}", "storage=local",
                 "metadata=sqlite", "auth=none"):
        assert part in line, line
    sfctl = Sfctl(tmp_path / "home")
    sfctl.run("cluster", "select", "--endpoint", server.url)
    config = (tmp_path / "home" / ".sfctl" / "config").read_text()
    assert f"endpoint = {server.url}" in config and "security = none" in config
    with httpx.Client(base_url=server.url) as rest:
        exercise(sfctl, rest, tmp_path / "pkgs")


def test_sfctl_over_https_with_client_certificates_from_certs_init(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "chunkd.cli.main", "certs", "init", "--data-dir", str(data_dir),
                          "--port", str(port)], check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()
    serve_cmd = shlex.split(next(line for line in lines if line.startswith("chunkd serve ")))
    select_cmd = shlex.split(next(line for line in lines if line.startswith("sfctl cluster select ")))
    tls = data_dir / "tls"
    ca_pem, admin, reader = tls / "ca.pem", tls / "admin.pem", tls / "reader.pem"
    assert f"export REQUESTS_CA_BUNDLE={ca_pem}" in lines

    server = ServerProcess(data_dir, [*serve_cmd[2:], "--workers", "2"], {}, port=port, scheme="https")
    try:
        # the probe needs a client certificate; two workers start slowly on a busy machine
        server.start(timeout=120, verify=client_context(ca_pem, admin))
        line = startup_line(server)
        assert f"https://127.0.0.1:{port}" in line and "auth=jwt+client-cert" in line, line
        with httpx.Client(base_url=server.url, verify=client_context(ca_pem, admin)) as admin_rest:
            check_certificates_reach_every_worker(server, ca_pem, admin, reader)
            check_sdk_session_certificate(server, ca_pem, admin, reader, admin_rest)
            run_sfctl_with_certificates(tmp_path, server, select_cmd, ca_pem, reader, admin_rest)
    finally:
        server.stop()


def check_certificates_reach_every_worker(server: ServerProcess, ca_pem: Path, admin: Path, reader: Path) -> None:
    """Fresh connections spread over both workers: each worker must see the certificate in its ASGI scope."""
    params = {"api-version": "6.0"}
    for i in range(8):
        with httpx.Client(base_url=server.url, verify=client_context(ca_pem, admin)) as fresh:
            r = fresh.put(f"/ImageStore/probe/{i}.txt", params=params, content=b"x")
            assert r.status_code == 200, r.text
        with httpx.Client(base_url=server.url, verify=client_context(ca_pem, reader)) as fresh:
            r = fresh.put(f"/ImageStore/probe/{i}.txt", params=params, content=b"yy")
            assert (r.status_code, r.json()["Error"]["Code"]) == (403, "E_ACCESSDENIED")
    with httpx.Client(base_url=server.url, verify=client_context(ca_pem, reader)) as c:
        assert set(store_tree(c, "probe").values()) == {1}  # reads work with the read-only certificate
        # A bearer token on a certificate connection takes precedence over the certificate.
        r = c.delete("/ImageStore/probe", params=params, headers={"Authorization": f"Bearer {server.token()}"})
        assert r.status_code == 200
        assert store_tree(c, "probe") == {}
    # A client without a certificate does not get through the TLS handshake.
    with pytest.raises(httpx.TransportError), \
            httpx.Client(base_url=server.url, verify=client_context(ca_pem, None)) as anonymous:
        anonymous.get("/ImageStore", params=params)


def check_sdk_session_certificate(server: ServerProcess, ca_pem: Path, admin: Path, reader: Path,
                                  admin_rest: httpx.Client) -> None:
    """The azure-servicefabric SDK with a client certificate on its requests session, as its users do it."""
    from azure.servicefabric import ServiceFabricClientAPIs
    from azure.servicefabric.models import FabricErrorException
    from msrest.authentication import Authentication

    class ClientCertificate(Authentication):  # type: ignore[misc]
        def __init__(self, pem: Path) -> None:
            self.pem = pem

        def signed_session(self, session: Any = None) -> Any:
            session = super().signed_session(session)
            session.cert = str(self.pem)
            return session

    def client(pem: Path) -> ServiceFabricClientAPIs:
        sdk = ServiceFabricClientAPIs(ClientCertificate(pem), base_url=server.url)
        sdk.config.retry_policy.total = False
        sdk.config.connection.verify = str(ca_pem)  # msrest's per-request verify (see the module docstring)
        return sdk

    sid = "6f1c1b9e-2c39-4a59-9a8e-1f0a7d3c5b21"
    data = os.urandom(10_000)
    admin_sdk = client(admin)
    admin_sdk.upload_file_chunk("sdk\\cert.bin", sid, f"bytes 5000-9999/{len(data)}", content=data[5000:])
    admin_sdk.upload_file_chunk("sdk\\cert.bin", sid, f"bytes 0-4999/{len(data)}", content=data[:5000])
    admin_sdk.commit_image_store_upload_session(sid)
    assert admin_rest.get("/ImageStore/sdk/cert.bin/$/Content", params={"api-version": "6.0"}).content == data
    reader_sdk = client(reader)
    assert reader_sdk.get_image_store_content("sdk").store_files[0].file_size == str(len(data))
    with pytest.raises(FabricErrorException) as denied:
        reader_sdk.delete_image_store_content("sdk")
    assert denied.value.error.error.code == "E_ACCESSDENIED"
    admin_sdk.delete_image_store_content("sdk")
    assert store_tree(admin_rest, "sdk") == {}


def run_sfctl_with_certificates(tmp_path: Path, server: ServerProcess, select_cmd: list[str], ca_pem: Path,
                                reader: Path, admin_rest: httpx.Client) -> None:
    sfctl = Sfctl(tmp_path / "home", ca_bundle=ca_pem)
    sfctl.run(*select_cmd[1:])  # as printed: --endpoint https://localhost:PORT --pem admin.pem --ca ca.pem
    exercise(sfctl, admin_rest, tmp_path / "pkgs")

    # Read-only certificate: reads work; upload and delete are refused and change nothing.
    files = make_package(tmp_path / "pkgs2")
    sfctl.run("application", "upload", "--path", str(tmp_path / "pkgs2" / APP))
    before = store_tree(admin_rest, APP)
    endpoint = select_cmd[select_cmd.index("--endpoint") + 1]
    sfctl.run("cluster", "select", "--endpoint", endpoint, "--pem", str(reader), "--ca", str(ca_pem))
    stat = sfctl.json("store", "stat", "--content-path", f"{APP}/Svc/Code/app.bin")
    assert stat["storeFiles"][0]["fileSize"] == str(len(files[f"{APP}/Svc/Code/app.bin"]))
    assert "E_ACCESSDENIED" in sfctl.run("store", "delete", "--content-path", APP, ok=False).stderr
    (tmp_path / "pkgs2" / APP).rename(tmp_path / "pkgs2" / "Other")
    refused = sfctl.run("application", "upload", "--path", str(tmp_path / "pkgs2" / "Other"), ok=False)
    assert "403 Client Error" in refused.stderr + refused.stdout
    assert store_tree(admin_rest, APP) == before
    assert store_tree(admin_rest, "Other") == {}

    # Without a client certificate sfctl cannot even select the cluster.
    sfctl.run("cluster", "select", "--endpoint", endpoint, ok=False)
