"""A small TCP proxy for fault-injection tests: it forwards 127.0.0.1:port to an upstream port and can
delay each forwarded piece, limit the client->server rate, and cut connections (every Nth forwarded piece,
in either direction, so some requests never arrive and some answers never come back)."""

from __future__ import annotations

import socket
import threading
import time


class TcpProxy:
    def __init__(self, upstream_port: int, *, delay: float = 0.0, drop_every: int = 0,
                 rate: float | None = None) -> None:
        self.upstream_port = upstream_port
        self.delay = delay  # seconds before each forwarded piece
        self.drop_every = drop_every  # every Nth forwarded piece kills its connection instead (0 = never)
        self.rate = rate  # client->server bytes per second (None = unlimited)
        self.pieces = 0
        self.drops = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
            pair = (client, upstream)
            threading.Thread(target=self._pump, args=(client, upstream, pair, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, pair, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket],
              upward: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    self.pieces += 1
                    cut = self.drop_every > 0 and self.pieces % self.drop_every == 0
                    if cut:
                        self.drops += 1
                if cut:
                    break
                if self.delay:
                    time.sleep(self.delay)
                if upward and self.rate:
                    time.sleep(len(data) / self.rate)
                dst.sendall(data)
        except OSError:
            pass
        for sock in pair:  # one direction ending (or a cut) closes the whole connection
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._stopped = True
        self._listener.close()
