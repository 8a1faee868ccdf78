"""``--workers`` A/B: 64 KiB durable tus PATCHes over N connections, with each worker's share of the CPU.

Usage: ``.venv/bin/python bench/workers_ab.py [--rounds 3] [--seconds 4] [--conns 8] [--baseline-src DIR]
[--durable-off]``.

Servers (all ``chunkd serve --no-auth``, durable unless ``--durable-off``, SQLite + local files, started
once, measured in
alternating rounds so background load hits them alike): ``w1`` (``--workers 1``) and ``w2`` (``--workers 2``)
of this checkout, and with ``--baseline-src DIR`` (the ``src`` of another checkout, e.g. a ``git worktree``
of main) ``w2-base``, that revision's ``--workers 2`` run through ``PYTHONPATH``. Each round opens ``conns``
new connections at once (as ``bench/run`` section 3 does), each PATCHes its own upload for ``seconds``, and
reports requests/s, the server tree's CPU-ms per request (``/proc``, workers included), how the workers'
CPU split (ticks per worker, sorted) and how the connections split (established ones each worker holds,
counted 0.5 s into the round), the cores busy meanwhile (this server, the driver, everything else on the
machine: other jobs share it) and the server's run-queue delay per request (time its threads were ready
to run but waited for a core, ``/proc/<pid>/task/*/schedstat``). Prints one JSON line per measurement
and a summary of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import flows
from bench.driver import Conn
from bench.object_store_section import cpu_seconds
from bench.peers import HOST, Chunkd, _tree, stop_all

SMALL = 64 << 10


class Server(Chunkd):
    def __init__(self, workdir: Path, label: str, workers: int, src: str = "", durable: bool = True) -> None:
        self.workers, self.src = workers, src
        super().__init__(workdir, durable=durable, label=label)

    def command(self) -> list[str]:
        return [*super().command(), "--workers", str(self.workers)]

    def env(self) -> dict[str, str]:
        return {**super().env(), **({"PYTHONPATH": self.src} if self.src else {})}


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _workers(pid: int) -> list[int]:
    """The supervisor's python children (uvicorn's workers; the resource tracker has no threads)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(k) for k in kids if len(os.listdir(f"/proc/{k}/task")) > 1] or [pid]


def _run_queue(pid: int) -> dict[str, int]:
    """Nanoseconds each thread of ``pid``'s tree spent runnable but waiting for a core (schedstat, 2nd field)."""
    out = {}
    for p in _tree(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                out[task.name] = int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError):
                continue
    return out


def _run_queue_since(pid: int, before: dict[str, int]) -> float:
    """Seconds of run-queue delay since ``before`` (threads that exited meanwhile are not counted)."""
    return sum(ns - before.get(tid, 0) for tid, ns in _run_queue(pid).items()) / 1e9


def _busy_seconds() -> float:
    """CPU time every core of the machine spent busy (``/proc/stat``: all but idle and iowait)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / os.sysconf("SC_CLK_TCK")


def _connections(pid: int, port: int) -> int:
    """Established TCP connections to ``port`` that process ``pid`` holds (``/proc/net/tcp`` + its fds)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "01" and int(f[1].split(":")[1], 16) == port:  # 01: ESTABLISHED, the server's end
            inodes.add(f"socket:[{f[9]}]")
    n = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            n += os.readlink(fd) in inodes
        except OSError:
            continue
    return n


def rate(peer: Server, conns: int, seconds: float) -> dict[str, object]:
    assert peer.proc is not None
    body = os.urandom(SMALL)
    barrier = threading.Barrier(conns + 1)
    counts, stop = [0] * conns, [0.0]

    def worker(i: int) -> None:
        c = Conn(HOST, peer.port)
        path = flows.tus_create(c, SMALL * 1_000_000)  # never reached
        barrier.wait()
        n = 0
        while time.perf_counter() < stop[0]:
            c.request("PATCH", path, {**flows.TUS, "Upload-Offset": str(n * SMALL),
                                      "Content-Type": "application/offset+octet-stream"}, body, expect=(204,))
            n += 1
        counts[i] = n
        c.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(conns)]
    for t in threads:
        t.start()
    pids = _workers(peer.proc.pid)
    ticks0, cpu0 = [_ticks(p) for p in pids], cpu_seconds(peer.proc.pid)
    wait0, busy0, driver0 = _run_queue(peer.proc.pid), _busy_seconds(), time.process_time()
    stop[0] = time.perf_counter() + 0.05 + seconds
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(min(0.5, seconds / 2))
    conns_split = sorted((_connections(p, peer.port) for p in pids), reverse=True)
    for t in threads:
        t.join()
    elapsed, done = time.perf_counter() - t0, sum(counts)
    server = cpu_seconds(peer.proc.pid) - cpu0
    driver, busy = time.process_time() - driver0, _busy_seconds() - busy0
    split = sorted((_ticks(p) - t for p, t in zip(pids, ticks0, strict=True)), reverse=True)
    return {"server": peer.name, "rps": round(done / elapsed, 1),
            "cpu_ms": round(1e3 * server / max(done, 1), 3), "split": split,
            # cores busy during the round: this server, the driver (this process), everything else
            "cores": [round(server / elapsed, 2), round(driver / elapsed, 2),
                      round(max(busy - server - driver, 0) / elapsed, 2)],
            "runq_ms": round(1e3 * _run_queue_since(peer.proc.pid, wait0) / max(done, 1), 3),
            "conns": conns_split}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--baseline-src", default="")
    ap.add_argument("--durable-off", action="store_true", help="CHUNKD_DURABLE=0 for every server")
    ap.add_argument("--work", default="/tmp/chunkd-workers-ab")
    args = ap.parse_args()
    work = Path(args.work)
    durable = not args.durable_off
    servers = [Server(work, "w1", 1, durable=durable), Server(work, "w2", 2, durable=durable)]
    if args.baseline_src:
        servers.append(Server(work, "w2-base", 2, args.baseline_src, durable=durable))
    results: dict[str, list[dict[str, object]]] = {s.name: [] for s in servers}
    try:
        for s in servers:
            s.start()
        time.sleep(8)  # spawned workers import the app after the port is already listening
        for s in servers:
            rate(s, args.conns, 1.0)  # warm-up: every worker has served
        for r in range(args.rounds):
            for s in (servers if r % 2 == 0 else servers[::-1]):
                res = rate(s, args.conns, args.seconds)
                results[s.name].append(res)
                print(json.dumps({"round": r, **res}), flush=True)
    finally:
        stop_all()
    summary = {name: {"rps": statistics.median(float(str(x["rps"])) for x in rs),
                      "cpu_ms": statistics.median(float(str(x["cpu_ms"])) for x in rs),
                      "splits": [x["split"] for x in rs], "conns": [x["conns"] for x in rs]}
               for name, rs in results.items()}
    w1 = summary["w1"]["rps"]
    for s in summary.values():
        s["x_w1"] = round(float(str(s["rps"])) / float(str(w1)), 2)
    print(json.dumps({"summary": summary, "load": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
