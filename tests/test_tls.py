"""HTTPS settings, client-certificate mapping, `chunkd certs init`, and the start-up safety checks of `serve`."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from uvicorn.importer import import_from_string

from chunkd.auth.authenticator import Authenticator
from chunkd.auth.permissions import IMAGESTORE_ADMIN, IMAGESTORE_READ
from chunkd.server.certs import LocalPKI
from chunkd.server.limits import LimitedHttpProtocol
from chunkd.server.tls import ClientCertHttpProtocol, TLSConfigError, uvicorn_tls_options
from chunkd.settings import Settings
from tests.serverproc import free_port


def _chunkd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chunkd.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def _scope(pem: str) -> dict[str, object]:
    return {"extensions": {"tls": {"client_cert_chain": [pem]}}}


# -- certificate -> principal ---------------------------------------------------------------------------


def test_certificates_map_to_admin_by_common_name_or_thumbprint_and_otherwise_read_only() -> None:
    ca = trustme.CA()
    admin_pem = ca.issue_cert(common_name="chunkd-admin").cert_chain_pems[0].bytes().decode()
    other_pem = ca.issue_cert(common_name="build-agent").cert_chain_pems[0].bytes().decode()
    der = x509.load_pem_x509_certificate(other_pem.encode()).public_bytes(Encoding.DER)
    thumbprint = hashlib.sha1(der).hexdigest()

    by_name = Authenticator(None, admin_names=frozenset({"chunkd-admin"}))
    admin = by_name.authenticate({}, _scope(admin_pem))
    assert (admin.kind, admin.user, admin.roles) == ("cert", "chunkd-admin", frozenset({IMAGESTORE_ADMIN}))
    reader = by_name.authenticate({}, _scope(other_pem))
    assert reader.roles == frozenset({IMAGESTORE_READ}) and not reader.has_any(IMAGESTORE_ADMIN)
    assert reader.app == thumbprint.upper() and reader.key != admin.key

    colon_thumbprint = ":".join(thumbprint[i:i + 2] for i in range(0, 40, 2)).lower()
    by_thumbprint = Authenticator(None, admin_names=frozenset({colon_thumbprint}))
    assert by_thumbprint.authenticate({}, _scope(other_pem)).has_any(IMAGESTORE_ADMIN)
    assert not by_thumbprint.authenticate({}, _scope(admin_pem)).has_any(IMAGESTORE_ADMIN)


# -- uvicorn options ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    ca, other = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    files = {"cert": d / "server.crt", "key": d / "server.key", "ca": d / "ca.pem", "wrong_key": d / "other.key"}
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    other.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(files["wrong_key"]))
    return files


def test_tls_options_require_client_certificates_through_the_importable_protocol(server_files, tmp_path) -> None:
    f = server_files
    options, http = uvicorn_tls_options(Settings(data_dir=tmp_path))
    assert options == {} and import_from_string(http) is LimitedHttpProtocol
    options, http = uvicorn_tls_options(Settings(data_dir=tmp_path, tls_cert=f["cert"], tls_key=f["key"]))
    assert import_from_string(http) is LimitedHttpProtocol and "ssl_cert_reqs" not in options
    options, http = uvicorn_tls_options(Settings(data_dir=tmp_path, tls_cert=f["cert"], tls_key=f["key"],
                                                 tls_client_ca=f["ca"]))
    assert options["ssl_cert_reqs"] == ssl.CERT_REQUIRED and options["ssl_ca_certs"] == str(f["ca"])
    assert import_from_string(http) is ClientCertHttpProtocol  # what each uvicorn worker does with it
    assert issubclass(ClientCertHttpProtocol, LimitedHttpProtocol)  # client-certificate servers keep the limits
    options, http = uvicorn_tls_options(Settings(data_dir=tmp_path, tls_cert=f["cert"], tls_key=f["key"],
                                                 tls_client_ca=f["ca"], tls_client_auth="optional"))
    assert options["ssl_cert_reqs"] == ssl.CERT_OPTIONAL and import_from_string(http) is ClientCertHttpProtocol


@pytest.mark.parametrize("bad", ["no_key", "ca_only", "wrong_key", "missing_ca", "client_auth"])
def test_tls_misconfiguration_is_a_clear_error(server_files, tmp_path, bad: str) -> None:
    f = server_files
    settings = {
        "no_key": Settings(data_dir=tmp_path, tls_cert=f["cert"]),
        "ca_only": Settings(data_dir=tmp_path, tls_client_ca=f["ca"]),
        "wrong_key": Settings(data_dir=tmp_path, tls_cert=f["cert"], tls_key=f["wrong_key"]),
        "missing_ca": Settings(data_dir=tmp_path, tls_cert=f["cert"], tls_key=f["key"],
                               tls_client_ca=tmp_path / "nope.pem"),
        "client_auth": Settings(data_dir=tmp_path, tls_cert=f["cert"], tls_key=f["key"], tls_client_ca=f["ca"],
                                tls_client_auth="sometimes"),
    }[bad]
    with pytest.raises(TLSConfigError):
        uvicorn_tls_options(settings)


def test_serve_refuses_bad_tls_files_before_starting(server_files, tmp_path) -> None:
    out = _chunkd("serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"),
                  "--tls-cert", str(server_files["cert"]), "--tls-key", str(server_files["wrong_key"]))
    assert out.returncode == 2 and "--tls-key" in out.stderr and "Traceback" not in out.stderr


# -- --no-auth safety and the start-up line -------------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_no_auth_is_refused_on_a_non_loopback_address(tmp_path, how: str) -> None:
    port = free_port()
    args = ["serve", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    out = _chunkd(*args, "--no-auth") if how == "flag" else _chunkd(*args, env={"CHUNKD_NO_AUTH": "1"})
    assert out.returncode == 2, out.stderr
    assert "refusing --no-auth on non-loopback address 0.0.0.0" in out.stderr and "--force" in out.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_no_auth_on_all_interfaces_with_force_and_the_startup_line(serve, tmp_path) -> None:
    server = serve("--no-auth", "--host", "0.0.0.0", "--force")
    line = next(x for x in server.log().splitlines() if x.startswith("chunkd listening on"))
    assert f"listening on http://0.0.0.0:{server.port} " in line
    assert f" data={server.data_dir.resolve()} " in line
    assert " storage=local " in line and " metadata=sqlite" in line and " auth=none " in line
    r = httpx.get(f"{server.url}/ImageStore", params={"api-version": "6.0"})  # no token needed
    assert r.status_code in (200, 204)


# -- chunkd certs init ----------------------------------------------------------------------------------


def test_certs_init_writes_a_usable_private_pki(tmp_path) -> None:
    out = _chunkd("certs", "init", "--data-dir", str(tmp_path), "--host", "files.example", "--port", "443")
    assert out.returncode == 0, out.stderr
    pki = LocalPKI(tmp_path / "tls")
    for private in (pki.ca_key, pki.server_key, pki.admin, pki.reader):
        assert private.stat().st_mode & 0o077 == 0
    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["files.example", "localhost"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # Each client PEM holds key + certificate (what sfctl --pem wants) and chains to the CA.
    for pem in (pki.admin, pki.reader):
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.load_cert_chain(str(pem))
    assert f"--tls-client-ca {pki.ca}" in out.stdout and "--host 0.0.0.0" in out.stdout
    assert f"sfctl cluster select --endpoint https://files.example:443 --pem {pki.admin} --ca {pki.ca}" in out.stdout

    again = _chunkd("certs", "init", "--data-dir", str(tmp_path), "--host", "files.example")
    assert again.returncode == 0 and "keeping" in again.stderr
    assert x509.load_pem_x509_certificate(pki.server_cert.read_bytes()) == server
    other = _chunkd("certs", "init", "--data-dir", str(tmp_path), "--host", "10.9.8.7")
    assert other.returncode == 1 and "not valid for 10.9.8.7" in other.stderr
    assert pki.uncovered(["files.example", "127.0.0.1", "10.9.8.7"]) == ["10.9.8.7"]



def test_optional_client_certificates_let_token_clients_in(serve, tmp_path) -> None:
    pki = LocalPKI(tmp_path / "tls")
    pki.init(["127.0.0.1"])
    server = serve("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                   "--tls-client-ca", str(pki.ca), "--tls-client-auth", "optional", scheme="https")
    assert " auth=jwt+optional-client-cert " in server.log()
    params = {"api-version": "6.0"}
    plain = ssl.create_default_context(cafile=str(pki.ca))
    with httpx.Client(base_url=server.url, verify=plain) as c:
        assert c.get("/ImageStore", params=params).json()["Error"]["Code"] == "E_ACCESSDENIED"  # no credentials
        r = c.put("/ImageStore/t.txt", params=params, content=b"tok",
                  headers={"Authorization": f"Bearer {server.token()}"})
        assert r.status_code == 200
    reader = ssl.create_default_context(cafile=str(pki.ca))
    reader.load_cert_chain(str(pki.reader))
    with httpx.Client(base_url=server.url, verify=reader) as c:
        assert c.get("/ImageStore/t.txt/$/Content", params=params).content == b"tok"
        assert c.delete("/ImageStore/t.txt", params=params).status_code == 403
