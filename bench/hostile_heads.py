"""Hostile request heads against one chunkd process: what a client that sends no valid request costs the server.

Usage: ``.venv/bin/python bench/hostile_heads.py [--only big,leak,trickle,cap] [--big-mib 64] [--leak-conns 20]
[--leak-kib 8192] [--trickle-conns 1000] [--trickle-seconds 45] [--cap-conns 5000] [--port 0]``.
It starts ``chunkd serve --no-auth`` (one process) with a temporary data directory; ``CHUNKD_*`` variables in the
environment reach it, so ``CHUNKD_HEADER_TIMEOUT=5 bench/hostile_heads.py --only trickle`` measures another
setting. Every scenario runs raw sockets on 127.0.0.1 and prints one JSON line:

- ``big``: one connection sends a request whose one header is ``--big-mib`` MiB, as fast as it can, while a
  second keep-alive connection sends ``OPTIONS /files/`` every 20 ms. Reports the time until the big request
  is answered (or its connection closed) and the probe's worst and median latency meanwhile.
- ``leak``: ``--leak-conns`` connections each send an unfinished ``--leak-kib`` KiB header, then close. Reports
  the server's RSS before, at the peak and 3 s after they closed.
- ``trickle``: ``--trickle-conns`` connections send one header byte per second each. Reports how many are
  still open after ``--trickle-seconds`` and when the server closed the others.
- ``cap``: ``--cap-conns`` connections open and send nothing. Reports how many the server refused at once
  (a 503 or a close within 2 s) and whether an established keep-alive connection was still served.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.local_server import start_chunkd

PROBE = b"OPTIONS /files/ HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` (KiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def read_response_head(sock: socket.socket) -> bytes:
    """Bytes up to the end of one response head ('' when the server closed first)."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return data
        if not chunk:
            return data
        data += chunk
    return data


class Probe(threading.Thread):
    """A keep-alive client sending one small request every 20 ms; its latencies say whether others are held up."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.failures = 0
        self.done = threading.Event()

    def run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        while not self.done.is_set():
            started = time.perf_counter()
            try:
                sock.sendall(PROBE)
                ok = read_response_head(sock).startswith(b"HTTP/1.1 204")
            except OSError:
                ok = False
            self.latencies.append(time.perf_counter() - started)
            if not ok:
                self.failures += 1
                sock.close()
                sock = socket.create_connection(("127.0.0.1", self.port))
            time.sleep(0.02)
        sock.close()

    def summary(self) -> dict[str, object]:
        self.done.set()
        self.join()
        return {"probe_requests": len(self.latencies), "probe_failures": self.failures,
                "probe_max_ms": round(max(self.latencies) * 1000, 1),
                "probe_median_ms": round(statistics.median(self.latencies) * 1000, 2)}


def send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:  # the server refused the rest: that is the point
        pass


def big(port: int, mib: int) -> dict[str, object]:
    probe = Probe(port)
    probe.start()
    time.sleep(0.5)
    sock = socket.create_connection(("127.0.0.1", port))
    head = b"GET /files/ HTTP/1.1\r\nHost: bench\r\nX-Big: " + b"a" * (mib << 20) + b"\r\n\r\n"
    started = time.perf_counter()
    sender = threading.Thread(target=send_quietly, args=(sock, head), daemon=True)
    sender.start()
    answer = read_response_head(sock)
    elapsed = time.perf_counter() - started
    sock.close()
    sender.join()
    time.sleep(0.3)
    return {"scenario": "big", "header_mib": mib, "answer": answer.split(b"\r\n", 1)[0].decode() or "(closed)",
            "answered_after_s": round(elapsed, 3), **probe.summary()}


def leak(port: int, pid: int, conns: int, kib: int) -> dict[str, object]:
    before = rss_kib(pid)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    head = b"GET /files/ HTTP/1.1\r\nHost: bench\r\nX-Big: " + b"a" * (kib << 10)
    senders = [threading.Thread(target=send_quietly, args=(s, head), daemon=True) for s in socks]
    for t in senders:
        t.start()
    for t in senders:
        t.join(60)
    time.sleep(1)
    peak = rss_kib(pid)
    for s in socks:
        s.close()
    time.sleep(3)
    after = rss_kib(pid)
    return {"scenario": "leak", "connections": conns, "header_kib": kib, "rss_before_mib": round(before / 1024, 1),
            "rss_peak_mib": round(peak / 1024, 1), "rss_after_close_mib": round(after / 1024, 1),
            "retained_mib": round((after - before) / 1024, 1)}


def _watch(socks: list[socket.socket], seconds: float, drip: bytes | None) -> tuple[list[float], int]:
    """Send ``drip`` (one byte at a time, once a second) on every open socket for ``seconds``; return when each
    closed socket was closed by the server (seconds from the start) and how many answered with a status line."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    start = time.monotonic()
    closed: dict[socket.socket, float] = {}
    answered = 0
    sent = 0
    next_drip = start
    while time.monotonic() - start < seconds and len(closed) < len(socks):
        now = time.monotonic()
        if drip is not None and now >= next_drip:
            byte = drip[sent % len(drip):sent % len(drip) + 1]
            sent += 1
            for s in socks:
                if s not in closed:
                    try:
                        s.send(byte)
                    except OSError:
                        closed[s] = now - start
            next_drip += 1.0
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj  # type: ignore[assignment]
            assert isinstance(s, socket.socket)
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 "):
                answered += 1
            if s not in closed:
                closed[s] = time.monotonic() - start
            sel.unregister(s)
    sel.close()
    return sorted(closed.values()), answered


def trickle(port: int, conns: int, seconds: float) -> dict[str, object]:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    for s in socks:
        s.sendall(b"GET /files/ HTTP/1.1\r\n")
    closed, answered = _watch(socks, seconds, drip=b"X-Slow: " + b"a" * 64 + b"\r\n")
    for s in socks:
        s.close()
    return {"scenario": "trickle", "connections": conns, "watched_s": seconds, "still_open": conns - len(closed),
            "closed_by_server": len(closed), "answered_with_status": answered,
            "closed_after_s_median": round(statistics.median(closed), 1) if closed else None,
            "closed_after_s_max": round(max(closed), 1) if closed else None}


def cap(port: int, pid: int, conns: int) -> dict[str, object]:
    before = rss_kib(pid)
    established = socket.create_connection(("127.0.0.1", port))
    established.sendall(PROBE)
    first = read_response_head(established)
    socks = []
    for _ in range(conns):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    closed, answered = _watch(socks, 2.0, drip=None)
    held = rss_kib(pid)
    started = time.perf_counter()
    established.sendall(PROBE)
    again = read_response_head(established)
    served_ms = (time.perf_counter() - started) * 1000
    fresh_ok = False
    for s in socks:
        s.close()
    time.sleep(1)
    with socket.create_connection(("127.0.0.1", port)) as fresh:
        fresh.sendall(PROBE)
        fresh_ok = read_response_head(fresh).startswith(b"HTTP/1.1 204")
    established.close()
    return {"scenario": "cap", "opened": len(socks), "refused_within_2s": len(closed), "refused_with_status": answered,
            "established_served": first.startswith(b"HTTP/1.1 204") and again.startswith(b"HTTP/1.1 204"),
            "established_latency_ms": round(served_ms, 1), "new_connection_served_after": fresh_ok,
            "rss_before_mib": round(before / 1024, 1), "rss_holding_mib": round(held / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="big,leak,trickle,cap")
    parser.add_argument("--big-mib", type=int, default=64)
    parser.add_argument("--leak-conns", type=int, default=20)
    parser.add_argument("--leak-kib", type=int, default=8192)
    parser.add_argument("--trickle-conns", type=int, default=1000)
    parser.add_argument("--trickle-seconds", type=float, default=45.0)
    parser.add_argument("--cap-conns", type=int, default=5000)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_chunkd(Path(tmp) / "data", "--no-auth", port=args.port)
        port = int(url.rsplit(":", 1)[1])
        try:
            for name in args.only.split(","):
                if name == "big":
                    result = big(port, args.big_mib)
                elif name == "leak":
                    result = leak(port, proc.pid, args.leak_conns, args.leak_kib)
                elif name == "trickle":
                    result = trickle(port, args.trickle_conns, args.trickle_seconds)
                elif name == "cap":
                    result = cap(port, proc.pid, args.cap_conns)
                else:
                    raise SystemExit(f"unknown scenario {name!r}")
                print(json.dumps(result), flush=True)
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
