"""The one load driver every server is measured with: raw HTTP/1.1 over keep-alive sockets.

Why not httpx/requests: their per-request overhead (header objects, body copies) would put the
driver, not the server, on the critical path for 64 KiB requests. Here a request is one ``sendall`` of
the head plus either ``os.sendfile`` from the source file (large bodies never enter Python) or one
``sendall`` of a preloaded buffer (small bodies); responses are parsed from a 1 MiB receive buffer.
Threads give concurrency: ``sendfile``/``recv`` release the GIL.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

SOCK_BUF = 8 << 20
TIMEOUT = 300.0  # a server that stalls this long fails the measurement instead of hanging the run


@dataclass
class FileBody:
    """``length`` bytes of the open file ``fd`` from ``offset``, sent with sendfile."""

    fd: int
    offset: int
    length: int


Body = bytes | memoryview | FileBody | None


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names; last value wins
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


class HTTPError(Exception):
    def __init__(self, what: str, resp: Response) -> None:
        super().__init__(f"{what}: HTTP {resp.status} {resp.body[:300]!r}")
        self.resp = resp


class Conn:
    """One keep-alive connection to ``host:port``; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self._buf = bytearray()
        self.requests = 0

    def _connect(self) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUF)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock, self._buf = s, bytearray()
        return s

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: Body = None,
                expect: tuple[int, ...] = ()) -> Response:
        """Send one request and read its response; raise HTTPError unless the status is in ``expect``
        (when given). A connection the server closed while idle is reopened once."""
        for attempt in (0, 1):
            fresh = self.sock is None
            sock = self.sock or self._connect()
            try:
                self._send(sock, method, path, headers or {}, body)
                resp = self._read(sock, method)
                break
            except (BrokenPipeError, ConnectionResetError, EOFError):
                self.close()
                if fresh or attempt:
                    raise
        self.requests += 1
        if resp.header("connection").lower() == "close":
            self.close()
        if expect and resp.status not in expect:
            raise HTTPError(f"{method} {path}", resp)
        return resp

    def _send(self, sock: socket.socket, method: str, path: str, headers: dict[str, str], body: Body) -> None:
        length = 0 if body is None else body.length if isinstance(body, FileBody) else len(body)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in ("PUT", "POST", "PATCH"):
            lines.append(f"Content-Length: {length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if isinstance(body, FileBody):
            sock.sendall(head)
            if body.length:
                # socket.sendfile = os.sendfile in a loop that also waits properly on a socket with a timeout
                with open(body.fd, "rb", buffering=0, closefd=False) as f:
                    if sock.sendfile(f, body.offset, body.length) != body.length:
                        raise BrokenPipeError("sendfile stopped early")
        elif body is not None and len(body) <= 256 << 10:
            sock.sendall(head + bytes(body))  # one segment for small requests
        else:
            sock.sendall(head)
            if body is not None:
                sock.sendall(body)

    def _fill(self, sock: socket.socket) -> None:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise EOFError("server closed the connection")
        self._buf += chunk

    def _read(self, sock: socket.socket, method: str) -> Response:
        while (i := self._buf.find(b"\r\n\r\n")) < 0:
            self._fill(sock)
        head = bytes(self._buf[:i]).decode("latin-1").split("\r\n")
        del self._buf[:i + 4]
        status = int(head[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        resp = Response(status, headers)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return resp
        if headers.get("transfer-encoding", "").lower() == "chunked":
            resp.body = self._read_chunked(sock)
        else:
            n = int(headers.get("content-length", "0"))
            while len(self._buf) < n:
                self._fill(sock)
            resp.body = bytes(self._buf[:n])
            del self._buf[:n]
        return resp

    def _read_chunked(self, sock: socket.socket) -> bytes:
        out = bytearray()
        while True:
            while (i := self._buf.find(b"\r\n")) < 0:
                self._fill(sock)
            size = int(bytes(self._buf[:i]).split(b";")[0], 16)
            del self._buf[:i + 2]
            while len(self._buf) < size + 2:
                self._fill(sock)
            out += self._buf[:size]
            del self._buf[:size + 2]
            if size == 0:
                return bytes(out)
