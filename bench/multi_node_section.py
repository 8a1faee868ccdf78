"""Section 8 of bench/run: 1, 2 and 3 chunkd nodes on ONE PostgreSQL database and one object store (moto).

The section creates its own database (``chunkd_bench_<random>``, dropped at the end) on the PostgreSQL
at 127.0.0.1:5432, starts moto and three ``chunkd serve`` nodes with separate data directories, all
pointed at that database and one bucket prefix. No load balancer: the driver spreads the work
round-robin over the first n node URLs -- session i is created on node i mod n, and its chunk j goes
to node (i + j) mod n, so consecutive chunks of one upload land on different nodes (the claim moves
with them, as behind a balancer without stickiness). Rounds alternate the node counts (1 2 3, 2 3 1,
...). Figures: aggregate MB/s of ``sessions`` concurrent tus uploads in ``chunk`` pieces, with the CPU
of all nodes per GiB, and 64 KiB PATCHes per second over ``conns`` connections; ratios 2 ÷ 1 and 3 ÷ 1.

On a machine with few cores the extra nodes compete for the same cores as the first one (and the
driver and moto), so the ratios show the cost of spreading one upload over several nodes, not scale-out.
"""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import flows
from bench.driver import Conn
from bench.object_store_section import Moto, StoreChunkd, cpu_seconds

if TYPE_CHECKING:
    from bench.harness import Bench

MiB, GiB = 1 << 20, 1 << 30
SECTION = "8. multi-node"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
NODES = (1, 2, 3)


@dataclass(frozen=True)
class NodePlan:
    total: int = 256 * MiB
    sessions: int = 16
    chunk: int = 8 * MiB
    small: int = 64 << 10
    small_conns: int = 8
    small_seconds: float = 3.0
    reps: int = 3


QUICK = NodePlan(total=8 * MiB, sessions=8, chunk=1 * MiB, small_seconds=0.3, reps=1)


def _label(n: int) -> str:
    return f"{n} node{'s' if n > 1 else ''}"


class Database:
    """A database of its own on the local PostgreSQL, created on enter and dropped (forcibly) on exit."""

    def __init__(self) -> None:
        self.name = f"chunkd_bench_{secrets.token_hex(6)}"
        self.url = f"postgresql://postgres@127.0.0.1:5432/{self.name}"

    def __enter__(self) -> Database:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *_exc: object) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Cluster:
    def __init__(self, nodes: list[StoreChunkd]) -> None:
        self.nodes = nodes
        self.pids = [n.proc.pid for n in nodes if n.proc is not None]

    def conns(self, n: int) -> list[Conn]:
        return [node.conn() for node in self.nodes[:n]]

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)


def aggregate(cluster: Cluster, n: int, plan: NodePlan, src: flows.Source) -> tuple[float, float]:
    """(MB/s, CPU-s/GiB of all nodes): ``plan.sessions`` concurrent tus uploads spread over ``n`` nodes."""
    each = flows.Source(src.path, plan.total // plan.sessions, src.fd)
    per = [cluster.conns(n) for _ in range(plan.sessions)]
    paths = [flows.tus_create(conns[i % n], each.size) for i, conns in enumerate(per)]

    def one(i: int) -> Callable[[], None]:
        def go() -> None:
            for j, (start, size) in enumerate(flows.pieces(0, each.size, plan.chunk)):
                conns = per[i]
                flows.tus_patch(conns[(i + j) % n], paths[i], each, start, size, plan.chunk, at=start)
        return go

    c0 = cluster.cpu()
    t = flows.timed(lambda: flows.parallel([one(i) for i in range(plan.sessions)]))
    used = cluster.cpu() - c0
    for i, path in enumerate(paths):  # outside the figures: keep moto's memory flat
        per[i][0].request("DELETE", path, flows.TUS, expect=(204,))
    for conns in per:
        for c in conns:
            c.close()
    return plan.sessions * each.size / t / 1e6, used / (plan.sessions * each.size / GiB)


def small_rate(cluster: Cluster, n: int, plan: NodePlan, body: bytes) -> float:
    """64 KiB PATCHes per second over ``plan.small_conns`` uploads, each PATCH to the next node in turn."""
    total = plan.small * 10_000_000
    counts = [0] * plan.small_conns
    per = [cluster.conns(n) for _ in range(plan.small_conns)]
    paths = [flows.tus_create(conns[i % n], total) for i, conns in enumerate(per)]
    stop_at = [0.0]

    def start_clock() -> None:  # when every thread is there: a slow thread start eats no window
        stop_at[0] = time.perf_counter() + 0.05 + plan.small_seconds

    barrier = threading.Barrier(plan.small_conns + 1, action=start_clock)

    def worker(i: int) -> None:
        barrier.wait()
        k = 0
        while time.perf_counter() < stop_at[0]:
            per[i][(i + k) % n].request("PATCH", paths[i], {**flows.TUS, "Upload-Offset": str(k * plan.small),
                                        "Content-Type": "application/offset+octet-stream"}, body, expect=(204,))
            k += 1
        counts[i] = k

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(plan.small_conns)]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    rate = sum(counts) / (time.perf_counter() - t0)
    for i, path in enumerate(paths):
        per[i][0].request("DELETE", path, flows.TUS, expect=(204,))
    for conns in per:
        for c in conns:
            c.close()
    return rate


def run(bench: Bench) -> None:
    """Section 8; skipped with the reason when PostgreSQL or moto is not there."""
    plan = QUICK if bench.r.mode == "quick" else NodePlan(reps=bench.plan.reps)
    try:
        import psycopg

        psycopg.connect(PG_ADMIN).close()
    except Exception as exc:
        bench.r.skip(SECTION, f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}"[:300])
        return
    store = Moto(bench.work)
    store.name = "moto-nodes"
    print(f"starting {store.name} ...", flush=True)
    try:
        store.start()
    except Exception as exc:
        bench.r.skip(SECTION, f"moto could not be installed or started: {exc}"[:300])
        return
    nodes: list[StoreChunkd] = []
    try:
        with Database() as db:
            bucket = store.bucket(f"nodes{secrets.token_hex(4)}")
            nodes += [StoreChunkd(bench.work, f"chunkd-node{i}", store.storage(bucket, "chunkd"), db.url)
                      for i in range(max(NODES))]
            print(f"starting {', '.join(n.name for n in nodes)} on {db.name} + {store.name} ...", flush=True)
            flows.parallel([node.start for node in nodes])  # they serialise their migration on an advisory lock
            measure(bench, Cluster(nodes), plan)
            for node in nodes:  # before the database is dropped
                node.stop()
    finally:
        for node in nodes:
            node.stop()
        store.stop()


def measure(bench: Bench, cluster: Cluster, plan: NodePlan) -> None:
    src = flows.make_source(bench.work / f"nodes-{plan.total // plan.sessions}.bin", plan.total // plan.sessions)
    body = src.read(0, plan.small)
    r = bench.r
    big = f"{plan.sessions} concurrent tus uploads x {plan.total // plan.sessions >> 20} MiB in {plan.chunk >> 20} " \
          "MiB chunks"
    rate = r.new(SECTION, big, "MB/s", note="one PostgreSQL database, one moto bucket; chunks round-robin over "
                 "the nodes; on 2 cores more nodes share the same cores")
    cpu = r.new(SECTION, big + ", CPU of all nodes", "CPU-s/GiB", higher_better=False)
    small = r.new(SECTION, f"64 KiB PATCHes, {plan.small_conns} connections", "requests/s")
    ratios = r.new(SECTION, "scaling (per round, ÷ 1 node)", "x")
    print(f"{SECTION}: {big}; 64 KiB PATCHes over {plan.small_conns} connections", flush=True)
    for rep in range(plan.reps):
        got: dict[int, tuple[float, float]] = {}
        for n in NODES[rep % 3:] + NODES[:rep % 3]:
            mb, c = aggregate(cluster, n, plan, src)
            req = small_rate(cluster, n, plan, body)
            got[n] = (mb, req)
            rate.add(_label(n), mb)
            cpu.add(_label(n), c)
            small.add(_label(n), req)
            print(f"    {_label(n):8s} {mb:9,.1f} MB/s  {c:6.2f} CPU-s/GiB  {req:9,.1f} 64 KiB PATCH/s", flush=True)
        for n in NODES[1:]:
            ratios.add(f"MB/s {n} ÷ 1", got[n][0] / got[1][0])
            ratios.add(f"64 KiB/s {n} ÷ 1", got[n][1] / got[1][1])
    for key, vals in ratios.values.items():
        print(f"    median {key}: {statistics.median(vals):.2f}x", flush=True)
