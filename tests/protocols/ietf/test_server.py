"""The IETF draft on a real server beyond the per-version table: the 104 interim response on the wire, auth,
the optional Upload-Limit members, and how a request that names no supported interop version is treated."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.protocols.ietf.conftest import PARTIAL, VERSIONS, Draft, start_server
from tests.serverproc import ServerProcess


def exchange(server: ServerProcess, head: str, body: bytes) -> bytes:
    """Send one request head, read what the server answers before the body, then send the body and read the
    final response's head; the two joined by ``|``."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head.encode())
        s.settimeout(1.0)
        early = b""
        try:
            while b"\r\n\r\n" not in early:
                piece = s.recv(65536)
                if not piece:
                    break
                early += piece
        except TimeoutError:
            pass
        s.settimeout(10)
        s.sendall(body)
        rest = b""
        while b"\r\n\r\n" not in rest:  # the final answers here have empty bodies
            piece = s.recv(65536)
            if not piece:
                break
            rest += piece
        return early + b"|" + rest


@pytest.mark.parametrize("version", VERSIONS)
def test_creation_sends_104_with_location_before_reading_the_body(server: ServerProcess, token: str,
                                                                   version: int) -> None:
    field = "Upload-Incomplete: ?0" if version == 3 else "Upload-Complete: ?1"
    head = (f"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Upload-Draft-Interop-Version: {version}\r\n{field}\r\nContent-Length: 5\r\n\r\n")
    early, _, final = exchange(server, head, b"hello").partition(b"|")
    assert early.startswith(b"HTTP/1.1 104 Upload Resumption Supported\r\n"), early
    fields = dict(line.split(b": ", 1) for line in early.split(b"\r\n\r\n")[0].split(b"\r\n")[1:])
    assert fields[b"upload-draft-interop-version"] == str(version).encode()
    assert fields[b"location"].startswith(b"http://127.0.0.1/files/")
    assert (b"upload-limit" in fields) == (version >= 6)
    assert final.startswith(b"HTTP/1.1 201 Created\r\n")
    assert b"location: " + fields[b"location"] in final


def test_no_104_without_the_interop_header_or_on_http_1_0(server: ServerProcess, token: str) -> None:
    tus = (f"POST /files/ HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n"
           "Upload-Length: 5\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 5\r\n\r\n")
    early, _, final = exchange(server, tus, b"hello").partition(b"|")
    assert early == b"" and final.startswith(b"HTTP/1.1 201")
    old = (f"POST /files/ HTTP/1.0\r\nHost: h\r\nAuthorization: Bearer {token}\r\nUpload-Draft-Interop-Version: 8\r\n"
           "Upload-Complete: ?1\r\nContent-Length: 5\r\n\r\n")
    early, _, final = exchange(server, old, b"hello").partition(b"|")
    assert early == b"" and final.startswith(b"HTTP/1.1 201")


def test_auth_is_tus_auth(server: ServerProcess, client: httpx.Client) -> None:
    draft = Draft(client, 8)
    path = draft.new(b"0123456789")
    with httpx.Client(base_url=server.url) as anonymous:
        r = anonymous.post("/files/", headers=draft.headers(True), content=b"x")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert anonymous.head(path, headers=draft.headers()).status_code == 401
    read_only = {"Authorization": "Bearer " + server.token("--roles", "Tus.Read")}
    with httpx.Client(base_url=server.url, headers=read_only) as reader:
        assert reader.head(path, headers=draft.headers()).status_code == 204
        assert reader.post("/files/", headers=draft.headers(True), content=b"x").status_code == 403
        assert reader.delete(path, headers=draft.headers()).status_code == 403
    other = {"Authorization": "Bearer " + server.token("--user", "someone-else", "--scopes", "Tus.ReadWrite")}
    with httpx.Client(base_url=server.url, headers=other) as stranger:
        assert stranger.head(path, headers=draft.headers()).status_code == 404  # another's upload is not revealed


def test_unsupported_interop_version_is_not_the_draft(client: httpx.Client) -> None:
    for version in ("2", "9", "x"):
        r = client.post("/files/", headers={"Upload-Draft-Interop-Version": version, "Upload-Complete": "?1"},
                        content=b"x")
        assert r.status_code == 412  # answered as tus 1.0, which needs Tus-Resumable
        assert r.headers["tus-version"] == "1.0.0"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Draft]]:
    proc = start_server(Path(tmp_path_factory.mktemp("ietf-limits")), env={
        "CHUNKD_IETF_MIN_SIZE": "10", "CHUNKD_IETF_MAX_APPEND_SIZE": "1000", "CHUNKD_IETF_MIN_APPEND_SIZE": "20"})
    with httpx.Client(base_url=proc.url, headers={"Authorization": "Bearer " + proc.token()}) as c:
        yield proc, Draft(c, 8)
    proc.stop()


def test_optional_limits_are_announced_and_enforced(limited: tuple[ServerProcess, Draft]) -> None:
    _, draft = limited
    r = draft.client.options("/files/", headers=draft.headers())
    limits = dict(item.strip().split("=") for item in r.headers["upload-limit"].split(","))
    assert (limits["min-size"], limits["max-append-size"], limits["min-append-size"]) == ("10", "1000", "20")
    assert draft.create(b"short", complete=True).status_code == 400  # below min-size
    assert draft.create(b"", complete=False).status_code == 400  # no length to check against min-size
    path = draft.new(b"0123456789", upload_length="2000")
    assert draft.append(path, 10, b"x" * 30).status_code == 204
    assert draft.append(path, 40, b"x" * 5).status_code == 400  # a non-completing append below min-append-size
    assert draft.append(path, 40, b"x" * 1001).status_code == 413  # above max-append-size

    def chunks() -> Iterator[bytes]:
        yield b"y" * 600
        yield b"y" * 600

    r = draft.client.patch(path, headers={**draft.headers(False, upload_offset="40"), "content-type": PARTIAL},
                           content=chunks())  # no Content-Length: cut off at the limit
    assert r.status_code == 413
    assert draft.offset(path) == 40  # refused appends record nothing
    r = draft.append(path, 40, b"z" * 960, complete=False)
    assert r.status_code == 204
    r = draft.append(path, 1000, b"z" * 1000, complete=True)
    assert r.status_code == 204 and r.headers["upload-complete"] == "?1"


@pytest.mark.parametrize("version", VERSIONS)
def test_interrupted_creation_resumes_from_the_104_location(server: ServerProcess, client: httpx.Client,
                                                            token: str, version: int) -> None:
    """The draft's first example: the whole file in one creation request, cut off; the client resumes with the
    URL of the 104, asking for the offset and appending the rest."""
    draft = Draft(client, version)
    data = bytes(range(256)) * 4096  # 1 MiB
    head = (f"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Upload-Draft-Interop-Version: {version}\r\n{draft.field}: {draft.flag(True)}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head.encode())
        early = b""
        while b"\r\n\r\n" not in early:
            early += s.recv(65536)
        s.sendall(data[:300_000])
    location = next(line.split(b": ", 1)[1] for line in early.split(b"\r\n") if line.startswith(b"location: "))
    path = httpx.URL(location.decode()).path
    deadline = time.monotonic() + 30
    while (r := draft.head(path)).headers.get("upload-offset") != "300000":  # until the server saw the cut
        assert r.status_code in (204, 423) and time.monotonic() < deadline, r.text
        time.sleep(0.05)
    assert r.headers[draft.field] == draft.flag(False)
    r = draft.append(path, 300_000, data[300_000:], complete=True)
    assert r.status_code in (200, 201, 204), r.text
    assert client.get(path).content == data
