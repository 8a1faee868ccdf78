"""A null HTTP sink: reads each request body into one reused buffer and answers 204.

It stores nothing, so the rate the load driver reaches against it is the driver's (and loopback's)
ceiling; bench/run prints it next to every server's rate.   usage: python nullsink.py PORT
"""

from __future__ import annotations

import socket
import sys
import threading

RESPONSE = b"HTTP/1.1 204 No Content\r\nServer: null-sink\r\n\r\n"


def serve_conn(conn: socket.socket) -> None:
    sink = bytearray(4 << 20)
    view = memoryview(sink)
    buf = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(1 << 16)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            take = min(length, len(buf))
            buf, length = buf[take:], length - take
            while length > 0:
                n = conn.recv_into(view, min(length, len(sink)))
                if not n:
                    return
                length -= n
            conn.sendall(RESPONSE)


def main() -> None:
    srv = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=256)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve_conn, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
