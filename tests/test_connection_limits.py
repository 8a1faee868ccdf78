"""Connection-level limits of a real ``chunkd serve``, spoken to over raw sockets: request-head size and field count
(431), the head timeout (408), the idle keep-alive timeout, the connection cap (503) -- and that large but legal
requests still pass."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import uuid

import httpx

from chunkd.server.certs import LocalPKI
from tests.serverproc import ServerProcess

OPTIONS = b"OPTIONS /files/ HTTP/1.1\r\nHost: t\r\n\r\n"  # tus discovery: 204 without credentials


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes] | None:
    """One response (status, lower-cased headers, body by Content-Length); None when the server closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection (EOF or reset) within the socket's timeout; bytes are skipped."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def head_of(size: int) -> bytes:
    """An OPTIONS /files/ request head of exactly ``size`` bytes (request line, headers, final CRLF)."""
    start, end = b"OPTIONS /files/ HTTP/1.1\r\nHost: t\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


def served(sock: socket.socket) -> bool:
    sock.sendall(OPTIONS)
    answer = read_response(sock)
    return answer is not None and answer[0] == 204


def test_an_oversized_head_is_refused_before_it_ends_and_other_connections_are_served(serve) -> None:
    server = serve("--no-auth")  # default limit: 64 KiB
    with connect(server) as other, connect(server) as big:
        assert served(other)
        # 128 KiB of one header that never ends: the server must answer without waiting for (or buffering) the rest
        big.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (128 << 10))
        answer = read_response(big)
        assert answer is not None, "no answer to a head larger than max_header_bytes"
        status, headers, body = answer
        assert status == 431 and headers["connection"] == "close" and b"max_header_bytes=65536" in body
        assert closed_by_server(big)
        assert served(other)  # the established keep-alive connection is still served
    with connect(server) as fresh:
        assert served(fresh)


def test_the_head_byte_limit_is_exact_and_body_bytes_do_not_count(serve) -> None:
    server = serve("--no-auth", "--max-header-bytes", "4096")
    with connect(server) as sock:
        sock.sendall(head_of(4096))
        assert read_response(sock)[0] == 204  # type: ignore[index]
        # head and a 100 KiB body in one write: only the head counts, on the same keep-alive connection
        body = os.urandom(100 << 10)
        sock.sendall(b"POST /files/ HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\nUpload-Length: %d\r\n"
                     b"Content-Type: application/offset+octet-stream\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), len(body), body))
        status, headers, _ = read_response(sock)  # type: ignore[misc]
        assert status == 201 and headers["upload-offset"] == str(len(body))
        assert served(sock)
    with connect(server) as sock:
        sock.sendall(head_of(4097))
        assert read_response(sock)[0] == 431  # type: ignore[index]


def test_more_header_fields_than_max_headers_are_refused(serve) -> None:
    server = serve("--no-auth", "--max-headers", "20")
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(19))  # + Host = 20 fields
    with connect(server) as sock:
        sock.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n")
        assert read_response(sock)[0] == 204  # type: ignore[index]
    with connect(server) as sock:
        sock.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: t\r\n" + fields + b"X-One-Too-Many: v\r\n\r\n")
        status, headers, body = read_response(sock)  # type: ignore[misc]
        assert status == 431 and b"max_headers=20" in body and headers["connection"] == "close"
        assert closed_by_server(sock)


def test_a_head_trickled_byte_by_byte_is_cut_off_after_the_header_timeout(serve) -> None:
    server = serve("--no-auth", "--header-timeout", "1")
    with connect(server) as sock:
        sock.sendall(b"OPTIONS /files/ HTTP/1.1\r\n")
        sock.settimeout(0.2)
        drip, answer = b"X-Slow: " + b"a" * 1000, b""
        deadline = time.monotonic() + 15
        for i in range(len(drip)):  # one byte every 0.2 s: never idle long, never finished
            try:
                answer = sock.recv(65536)
                break
            except TimeoutError:
                sock.sendall(drip[i:i + 1])
            assert time.monotonic() < deadline
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        sock.settimeout(15)
        assert closed_by_server(sock)
    with connect(server) as silent:  # a connection that never sends a byte is closed too, without an answer
        assert silent.recv(65536) == b""


def test_an_idle_keep_alive_connection_is_closed(serve) -> None:
    server = serve("--no-auth", "--keep-alive-timeout", "1")
    with connect(server) as sock:
        assert served(sock) and served(sock)  # keep-alive works
        assert sock.recv(65536) == b""  # then idle: closed by the server (socket timeout 15 s)


def test_the_rest_of_a_body_after_an_early_answer_must_arrive_in_time(serve) -> None:
    server = serve("--header-timeout", "1")  # authentication on: the upload is answered 401 before its body
    with connect(server) as sock:
        sock.sendall(b"POST /files/ HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 1000000000\r\n"
                     b"Content-Type: application/offset+octet-stream\r\nContent-Length: 1000000000\r\n\r\nabc")
        assert read_response(sock)[0] == 401  # type: ignore[index]
        sock.settimeout(0.2)
        deadline, closed = time.monotonic() + 15, False
        while not closed:  # keep the body trickling in: the server must still close the connection
            assert time.monotonic() < deadline, "the connection stayed open"
            try:
                closed = sock.recv(65536) == b""
            except TimeoutError:
                try:
                    sock.sendall(b"x")
                except OSError:
                    closed = True
            except ConnectionResetError:
                closed = True


def test_connections_beyond_the_cap_get_503_and_established_ones_are_still_served(serve) -> None:
    server = serve("--no-auth", "--max-connections", "3")
    held: list[socket.socket] = []
    deadline = time.monotonic() + 15
    while len(held) < 3:  # the start-up probe's connection may still be counted for a moment
        assert time.monotonic() < deadline
        sock = connect(server)
        if served(sock):
            held.append(sock)
        else:
            sock.close()
            time.sleep(0.1)
    with connect(server) as extra:
        status, headers, _ = read_response(extra)  # type: ignore[misc]  # answered at once, nothing sent
        assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
        assert closed_by_server(extra)
    assert all(served(sock) for sock in held)
    held.pop().close()
    while True:  # a freed slot is usable again once the server has seen the close
        assert time.monotonic() < deadline
        with connect(server) as sock:
            if served(sock):
                break
        time.sleep(0.1)
    for sock in held:
        sock.close()


def test_large_but_legal_heads_pass(serve) -> None:
    server = serve()
    # a token with 200 group-like roles, as Entra ID puts up to 200 groups into a JWT, and an 8 KiB header
    groups = " ".join(str(uuid.UUID(int=i)) for i in range(200))
    token = server.token("--roles", f"Tus.ReadWrite {groups}")
    assert len(token) > 10_000
    headers = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", "Upload-Length": "3",
               "X-Padding": "p" * 8192}
    created = httpx.post(f"{server.url}/files/", headers=headers)
    assert created.status_code == 201, created.text
    patched = httpx.patch(httpx.URL(server.url).join(created.headers["Location"]), content=b"abc",
                          headers={**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert patched.status_code == 204 and patched.headers["Upload-Offset"] == "3"


def test_invalid_limit_settings_are_a_one_line_error(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "chunkd.cli.main", "serve", "--data-dir", str(tmp_path),
                          "--max-headers", "0"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "CHUNKD_HEADER_TIMEOUT": "-1"})
    assert out.returncode == 2
    assert "Invalid value for '--max-headers'" in out.stderr and "Invalid value for CHUNKD_HEADER_TIMEOUT" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_descriptor_limit_is_raised_to_hold_the_connection_cap() -> None:
    code = ("import resource; from chunkd.server.limits import raise_fd_limit; "
            "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)); raise_fd_limit(1000); "
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)")
    soft, hard = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                         timeout=60).stdout.split())
    assert soft == min(2 * 1000 + 256, hard if hard >= 0 else 1 << 62) and soft > 256


def test_https_connections_have_the_same_limits(serve, tmp_path) -> None:
    pki = LocalPKI(tmp_path / "tls")
    pki.init(["127.0.0.1"])
    # with a client CA the server uses its client-certificate protocol class, which must keep the limits
    server = serve("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--tls-client-ca",
                   str(pki.ca), "--tls-client-auth", "optional", "--max-headers", "10", scheme="https")
    context = ssl.create_default_context(cafile=str(pki.ca))
    with context.wrap_socket(connect(server), server_hostname="127.0.0.1") as tls:
        tls.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (128 << 10))
        status, _, body = read_response(tls)  # type: ignore[misc]
        assert status == 431 and b"max_header_bytes" in body
    with context.wrap_socket(connect(server), server_hostname="127.0.0.1") as tls:
        tls.sendall(b"OPTIONS /files/ HTTP/1.1\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(11)) + b"\r\n")
        status, _, body = read_response(tls)  # type: ignore[misc]
        assert status == 431 and b"max_headers=10" in body
    with context.wrap_socket(connect(server), server_hostname="127.0.0.1") as tls:
        assert served(tls)
