"""bench/run: chunkd side by side with @tus/server and nginx, scaling curves, targets, table and plots.

    bench/run            the full run (~30 min on 2 cores)
    bench/run --quick    a smoke run of seconds (tiny sizes, one or two repetitions)
    bench/run --only big,small --reps 5

Servers run alternately (A B C, A B C, ...) and every figure is a median over those rounds, so a
noisy machine slows all of them alike; ratios are taken within one run. Output goes to
bench/out/<timestamp>/ (results.md, results.json, overview.png) and the Markdown is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import anyio

from bench import flows, inproc, multi_node_section, object_store_section, peers, small_extra, stores_report, targets
from bench.baseline import Baseline
from bench.driver import Conn
from bench.flows import Source
from bench.peers import Chunkd, Nginx, NullSink, Peer, TusNode, install_cleanup, stop_all
from bench.report import NGINX, NULL, TUS_NODE, Results, save
from chunkd.protocols.graph_print import NEXT_EXPECTED_RANGES

MiB, GiB = 1 << 20, 1 << 30
SECTIONS = ("big", "parallel", "small", "many", "scale", "commit", "missing", "meta", "rss", "stores", "nodes")

C_TUS, C_SF, C_GRAPH = "chunkd tus", "chunkd SF UploadChunk", "chunkd Graph uploadUrl"
C_TUS_ND, C_SF_ND = "chunkd tus (durable off)", "chunkd SF (durable off)"
C_BLOB = "chunkd Blob Put Block (Industry Data)"
C_PG, C_W2 = "chunkd tus, PostgreSQL metadata", "chunkd tus --workers 2"


@dataclass(frozen=True)
class Plan:
    big: int = 1 * GiB
    chunks: tuple[int, ...] = (8 * MiB, 64 * MiB)
    reps: int = 3
    streams: int = 4
    small: int = 64 << 10
    small_seconds: float = 2.0
    small_conns: tuple[int, ...] = (1, 8)
    small_reps: int = 3
    many: int = 1000
    many_size: int = 1 * MiB
    many_reps: int = 2
    sessions: tuple[int, ...] = (1, 4, 16, 64)
    scale_total: int = 1 * GiB
    scale_chunk: int = 8 * MiB
    scale_reps: int = 2
    commit_sizes: tuple[int, ...] = (16 * MiB, 64 * MiB, 256 * MiB, 1 * GiB, 4 * GiB)
    range_counts: tuple[int, ...] = (1, 10, 100, 1_000, 10_000, 100_000)
    range_reps: int = 15
    meta_counts: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    meta_reps: int = 40
    rss_uploads: int = 16
    rss_size: int = 1 * GiB
    rss_chunk: int = 64 * MiB
    sync: bool = True  # os.sync() before every timed run, so no run pays for another's writeback


QUICK = Plan(big=16 * MiB, chunks=(1 * MiB, 4 * MiB), reps=2, small_seconds=0.2, small_reps=1, many=10,
             many_size=64 << 10,
             many_reps=1, sessions=(1, 4), scale_total=16 * MiB, scale_chunk=1 * MiB, scale_reps=1,
             commit_sizes=(1 * MiB, 4 * MiB, 16 * MiB), range_counts=(1, 100, 1_000), range_reps=3,
             meta_counts=(100, 1_000), meta_reps=3, rss_uploads=4, rss_size=8 * MiB, rss_chunk=4 * MiB, sync=False)


def _mb_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def _size(n: int) -> str:
    return f"{n >> 30} GiB" if n >= GiB and n % GiB == 0 else f"{n >> 20} MiB" if n >= MiB else f"{n >> 10} KiB"


class Bench:
    def __init__(self, plan: Plan, work: Path, results: Results, only: set[str]) -> None:
        self.plan, self.work, self.r, self.only = plan, work, results, only
        self.src: Source | None = None
        self.peers: dict[str, Peer] = {}
        self.tus_why = ""
        self.graph_why = "Graph print front end not mounted yet"
        self.printer = ""
        self.blob_why = "Industry Data front end not mounted yet"
        self.blob_sas = ""
        self.baseline: Baseline | None = None  # --baseline REV: twins of the chunkd entries (bench/baseline.py)
        self.cpu: dict[tuple[str, int], list[float]] = {}  # (label, conns) -> server CPU-ms per request
        self.driver_cpu: dict[tuple[str, int], list[float]] = {}  # (label, conns) -> the driver's CPU-ms per request
        # PostgreSQL counters per 64 KiB PATCH, one figure per run: commits (the target), writes, xact_commit,
        # wal_syncs
        self.pg_commits: dict[str, list[float]] = {}

    # -- plumbing ----------------------------------------------------------------------------------
    def source(self) -> Source:
        if self.src is None:
            print(f"writing a {_size(self.plan.big)} random source file ...", flush=True)
            self.src = flows.make_source(self.work / f"source-{self.plan.big}.bin", self.plan.big)
        return self.src

    def start_peers(self) -> None:
        """Start every peer; a peer that cannot be installed or started is left out with a note."""
        w = self.work
        self.peers = {"chunkd": Chunkd(w), "chunkd-nd": Chunkd(w, durable=False), NULL: NullSink(w),
                      NGINX: Nginx(w), TUS_NODE: TusNode(w)}
        if "small" in self.only:
            self.peers[C_W2] = small_extra.Workers2(w)
            self.peers[C_PG] = small_extra.PgChunkd(w)
        for name, peer in self.peers.items():
            why = TusNode.available() if name == TUS_NODE else small_extra.pg_available() if name == C_PG else ""
            if why:
                self.r.skip(name, why)
                continue
            print(f"starting {name} ...", flush=True)
            try:
                peer.start()
            except Exception as exc:
                if name in ("chunkd", "chunkd-nd"):
                    raise
                self.r.skip(name, f"could not install or start it: {exc}"[:300])
        self.tus_why = flows.tus_available(self.peers["chunkd"].conn())
        if self.tus_why:
            self.r.skip("chunkd tus measurements", self.tus_why)
        try:
            self.printer = flows.graph_printer(self.peers["chunkd"].conn())
            self.graph_why = ""
        except Exception as exc:
            self.graph_why = f"no Graph print front end ({exc})"[:200]
        try:
            self.blob_sas = flows.blob_session(self.peers["chunkd"].conn())
            self.blob_why = ""
        except Exception as exc:
            self.blob_why = f"no Industry Data front end ({exc})"[:200]
        if self.baseline:
            self.baseline.start(self.work)

    def measure(self, series_args: tuple[str, str, str], entries: list[tuple[str, Peer, Callable[[], float]]],
                reps: int, higher_better: bool = True, note: str = "") -> None:
        """Run each entry ``reps`` times, alternating (the starting entry rotates every round); each
        callable returns the figure. Finished files are wiped and the page cache synced between runs."""
        section, case, unit = series_args
        s = self.r.new(section, case, unit, higher_better, note)
        print(f"{section}: {case}", flush=True)
        if self.baseline:
            entries = self.baseline.expand(self, entries)
        entries = [e for e in entries if e[1].proc is not None]
        for rep in range(reps):
            order = entries[rep % len(entries):] + entries[:rep % len(entries)]
            for label, peer, fn in order:
                if self.plan.sync:
                    os.sync()
                try:
                    value = fn()
                except Exception as exc:
                    self.r.skip(f"{section} {case} on {label}", f"{type(exc).__name__}: {exc}"[:300])
                    entries = [e for e in entries if e[0] != label]
                    continue
                finally:
                    peer.wipe()
                s.add(label, value)
                print(f"    {label:32s} {value:12,.1f} {unit}", flush=True)

    def p(self, name: str) -> Peer:
        return self.peers[name]

    def has(self, name: str) -> bool:
        return self.peers[name].proc is not None

    # -- 1. one large upload -----------------------------------------------------------------------
    def big(self) -> None:
        src, plan = self.source(), self.plan
        for chunk in plan.chunks:
            entries: list[tuple[str, Peer, Callable[[], float]]] = []

            def add(label: str, peer: Peer, upload: Callable[[Conn], object]) -> None:
                def run() -> float:
                    conn = peer.conn()
                    try:
                        return _mb_s(src.size, flows.timed(lambda: upload(conn)))
                    finally:
                        conn.close()
                entries.append((label, peer, run))  # noqa: B023 - add() runs before the loop moves on

            add(NGINX, self.p(NGINX), lambda c: flows.nginx_put(c, src, uuid.uuid4().hex))
            if not self.tus_why:
                add(C_TUS, self.p("chunkd"), lambda c, ch=chunk: flows.tus_upload(c, src, ch))
                # like for like: @tus/server and nginx acknowledge bytes that are only in the page cache
                add(C_TUS_ND, self.p("chunkd-nd"), lambda c, ch=chunk: flows.tus_upload(c, src, ch))
            if self.has(TUS_NODE):
                add(TUS_NODE, self.p(TUS_NODE), lambda c, ch=chunk: flows.tus_upload(c, src, ch))
            add(C_SF, self.p("chunkd"), lambda c, ch=chunk: flows.sf_upload(c, src, f"b/{uuid.uuid4().hex}", ch))
            if not self.graph_why:
                add(C_GRAPH, self.p("chunkd"), lambda c, ch=chunk: flows.graph_upload(c, self.printer, src, ch))
            if not self.blob_why:
                add(C_BLOB, self.p("chunkd"), lambda c, ch=chunk: flows.blob_upload(c, self.blob_sas, src, ch))
            add(NULL, self.p(NULL), lambda c: flows.nginx_put(c, src, "x"))
            self.measure(("1. one upload", f"{_size(src.size)} in {_size(chunk)} chunks", "MB/s"),
                         entries, plan.reps, note="nginx and the null sink take one PUT of the whole file; "
                         "chunkd durable: fdatasync + SQLite commit before each 2xx, "
                         "@tus/server and nginx do not fsync")
        if self.graph_why:
            self.r.skip("Graph uploadUrl upload", self.graph_why)
        if self.blob_why:
            self.r.skip("Blob Put Block upload", self.blob_why)

    # -- 2. parallel range streams into one session ------------------------------------------------
    def parallel(self) -> None:
        src, plan, n = self.source(), self.plan, self.plan.streams
        chunk = plan.chunks[0]
        share = -(-src.size // n)

        def nginx() -> float:
            conns = [self.p(NGINX).conn() for _ in range(n)]
            t = flows.timed(lambda: flows.parallel([
                lambda i=i, c=c: flows.nginx_put(c, src, f"p{i}", i * share, min(share, src.size - i * share))
                for i, c in enumerate(conns)]))
            for c in conns:
                c.close()
            return _mb_s(src.size, t)

        entries: list[tuple[str, Peer, Callable[[], float]]] = [(f"{NGINX}", self.p(NGINX), nginx)]
        entries.append((C_SF, self.p("chunkd"), lambda: _mb_s(src.size, flows.timed(
            lambda: flows.sf_parallel(self.p("chunkd").conn, src, f"p/{uuid.uuid4().hex}", chunk, n)))))
        if not self.tus_why:
            entries.append(("chunkd tus concatenation", self.p("chunkd"), lambda: _mb_s(src.size, flows.timed(
                lambda: flows.tus_concat(self.p("chunkd").conn, src, chunk, n)))))
        self.measure(("2. parallel streams", f"{n} streams, {_size(src.size)}, {_size(chunk)} chunks", "MB/s"),
                     entries, plan.reps, note="nginx: 4 separate PUTs of a quarter each; @tus/server has no "
                     "concatenation (501), so it is not in this row")

    # -- 3. small chunks ---------------------------------------------------------------------------
    def small_rate(self, peer: Peer, conns: int, kind: str, label: str = "") -> float:
        """64 KiB requests per second over ``conns`` keep-alive connections for ``small_seconds``; with a
        ``label``, the server's own CPU per request (``/proc`` of its process tree) goes to ``self.cpu``."""
        plan, src = self.plan, self.source()
        body = src.read(0, plan.small)
        total = plan.small * 10_000_000
        counts = [0] * conns
        stop_at = [0.0]

        def start_clock() -> None:  # once every worker has created its upload: slow set-up eats no window
            stop_at[0] = time.perf_counter() + 0.05 + plan.small_seconds

        barrier = threading.Barrier(conns + 1, action=start_clock)

        def worker(i: int) -> None:
            c = peer.conn()
            path, sid = "", str(uuid.uuid4())
            if kind == "tus":
                path = flows.tus_create(c, total)
            barrier.wait()
            n = 0
            while time.perf_counter() < stop_at[0]:
                off = n * plan.small
                if kind == "tus":
                    c.request("PATCH", path, {**flows.TUS, "Upload-Offset": str(off),
                                              "Content-Type": "application/offset+octet-stream"}, body,
                              expect=(204,))
                elif kind == "sf":
                    c.request("PUT", f"/ImageStore/s/{sid}/$/UploadChunk?{flows.SF_Q}&session-id={sid}",
                              {"Content-Range": f"bytes {off}-{off + plan.small - 1}/{total}"}, body, expect=(200,))
                else:
                    c.request("PUT", f"/small/{i}", {}, body, expect=(201, 204))
                n += 1
            counts[i] = n
            c.close()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(conns)]
        for t in threads:
            t.start()
        # a --baseline twin borrows the current peer object with another port: its CPU is not this process's
        own = bool(label) and peer.proc is not None and not label.endswith("[baseline]")
        pid = peer.proc.pid if own and peer.proc is not None else 0
        pg = peer if own and isinstance(peer, small_extra.PgChunkd) else None
        cpu0, commits0 = small_extra.cpu_seconds(pid) if pid else 0.0, pg.commits() if pg else {}
        barrier.wait()
        t0, driver0 = time.perf_counter(), time.process_time()
        for t in threads:
            t.join()
        elapsed, done = time.perf_counter() - t0, sum(counts)
        if label and done:  # this process's own CPU: is the driver what saturates a core?
            self.driver_cpu.setdefault((label, conns), []).append(1e3 * (time.process_time() - driver0) / done)
        if pid and done:
            self.cpu.setdefault((label, conns), []).append(1e3 * (small_extra.cpu_seconds(pid) - cpu0) / done)
        if pg and done:
            time.sleep(1.2)  # PostgreSQL flushes a backend's counters at most once a second
            for k, v in pg.commits().items():
                self.pg_commits.setdefault(k, []).append((v - commits0[k]) / done)
        return done / elapsed

    def small(self) -> None:
        plan = self.plan
        for conns in plan.small_conns:
            e: list[tuple[str, Peer, Callable[[], float]]] = []

            def add(label: str, peer: Peer, kind: str, conns: int = conns) -> None:
                e.append((label, peer, lambda: self.small_rate(peer, conns, kind, label)))  # noqa: B023

            if not self.tus_why:
                add(C_TUS, self.p("chunkd"), "tus")
                add(C_TUS_ND, self.p("chunkd-nd"), "tus")
                if self.has(C_PG):
                    add(C_PG, self.p(C_PG), "tus")
                if conns > 1 and self.has(C_W2):
                    add(C_W2, self.p(C_W2), "tus")
            if self.has(TUS_NODE):
                add(TUS_NODE, self.p(TUS_NODE), "tus")
            add(C_SF, self.p("chunkd"), "sf")
            add(C_SF_ND, self.p("chunkd-nd"), "sf")
            add(NGINX, self.p(NGINX), "put")
            add(NULL, self.p(NULL), "put")
            self.measure(("3. 64 KiB chunks", f"{conns} connection{'s' if conns > 1 else ''}", "requests/s"), e,
                         plan.small_reps, note="chunkd durable: fdatasync + SQLite commit before each 2xx; "
                         "@tus/server and nginx do not fsync")
            plural = "s" if conns > 1 else ""
            cpu = self.r.new("3. 64 KiB chunks", f"server CPU per request, {conns} connection{plural}",
                             "CPU-ms", higher_better=False, note="utime + stime of the server's process tree")
            for (label, c), vals in self.cpu.items():
                if c == conns:
                    cpu.values[label] = vals
            drv = self.r.new("3. 64 KiB chunks", f"driver CPU per request, {conns} connection{plural}", "CPU-ms",
                             higher_better=False, note="the load driver's own process (all its threads)")
            for (label, c), vals in self.driver_cpu.items():
                if c == conns:
                    drv.values[label] = vals
        if self.pg_commits:
            self.r.scaling["pg_commits_per_chunk"] = self.pg_commits["commits"]  # the target's figure
            self.r.scaling["pg_write_xids_per_chunk"] = self.pg_commits["writes"]
            self.r.scaling["pg_xact_commit_per_chunk"] = self.pg_commits["xact_commit"]
            self.r.scaling["pg_wal_syncs_per_chunk"] = self.pg_commits["wal_syncs"]
            self.r.notes.append("PostgreSQL counters per 64 KiB PATCH (medians): "
                                + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in self.pg_commits.items())
                                + " (commits: write transactions chunkd's metadata store committed, from its "
                                "/metrics; writes: transaction ids taken, cluster-wide, a group commit's "
                                "savepoints included; xact_commit: every commit of the database, read-only ones "
                                "included; wal_syncs: WAL flushes, cluster-wide)")
        limits = small_extra.machine_limits(self.work / "limits", 10 if self.r.mode == "quick" else 100)
        self.r.scaling["machine_limits"] = limits
        self.r.notes.append(f"machine limits (same run, same disk): 64 KiB pwrite + fdatasync "
                            f"{limits['fdatasync_64k'] * 1e3:.2f} ms, one SQLite WAL commit (synchronous=FULL) "
                            f"{limits['wal_commit'] * 1e3:.2f} ms: 1 / (fdatasync + commit) = "
                            f"{1 / (limits['fdatasync_64k'] + limits['wal_commit']):,.0f} acks/s on one connection")

    # -- 4. many small files -----------------------------------------------------------------------
    def many(self) -> None:
        plan, src = self.plan, self.source()
        n, size = plan.many, plan.many_size
        body = src.read(0, size)

        def run(peer: Peer, kind: str) -> float:
            c = peer.conn()

            def go() -> None:
                for i in range(n):
                    if kind == "tus":
                        path = flows.tus_create(c, size)
                        c.request("PATCH", path, {**flows.TUS, "Upload-Offset": "0",
                                                  "Content-Type": "application/offset+octet-stream"}, body,
                                  expect=(204,))
                    elif kind == "sf":
                        sid = str(uuid.uuid4())
                        c.request("PUT", f"/ImageStore/m/{sid}/$/UploadChunk?{flows.SF_Q}&session-id={sid}",
                                  {"Content-Range": f"bytes 0-{size - 1}/{size}"}, body, expect=(200,))
                        flows.sf_commit(c, sid)
                    else:
                        c.request("PUT", f"/many/{i}", {}, body, expect=(201, 204))

            t = flows.timed(go)
            c.close()
            return n / t

        e: list[tuple[str, Peer, Callable[[], float]]] = []
        if not self.tus_why:
            e.append((C_TUS, self.p("chunkd"), lambda: run(self.p("chunkd"), "tus")))
        if self.has(TUS_NODE):
            e.append((TUS_NODE, self.p(TUS_NODE), lambda: run(self.p(TUS_NODE), "tus")))
        e.append((C_SF, self.p("chunkd"), lambda: run(self.p("chunkd"), "sf")))
        e.append((NGINX, self.p(NGINX), lambda: run(self.p(NGINX), "put")))
        self.measure(("4. many small files", f"{n:,} x {_size(size)}, 1 connection", "files/s"), e, plan.many_reps,
                     note="tus: POST + PATCH; SF: UploadChunk + CommitUploadSession; nginx: one PUT")

    # -- 5a. concurrency -------------------------------------------------------------------------
    def scale(self) -> None:
        plan, src = self.plan, self.source()
        for n in plan.sessions:
            each = max(plan.scale_total // n, 1 * MiB)
            each = min(each, src.size)
            part = Source(src.path, each, src.fd)

            def run(peer: Peer, kind: str, n: int = n, part: Source = part) -> float:
                conns = [peer.conn() for _ in range(n)]
                fns: list[Callable[[], object]] = []
                for i, c in enumerate(conns):
                    if kind == "tus":
                        fns.append(lambda c=c: flows.tus_upload(c, part, plan.scale_chunk))
                    elif kind == "sf":
                        fns.append(lambda c=c: flows.sf_upload(c, part, f"s/{uuid.uuid4().hex}", plan.scale_chunk))
                    else:
                        fns.append(lambda c=c, i=i: flows.nginx_put(c, part, f"s{i}"))
                t = flows.timed(lambda: flows.parallel(fns))
                for c in conns:
                    c.close()
                return _mb_s(n * part.size, t)

            e: list[tuple[str, Peer, Callable[[], float]]] = [(NGINX, self.p(NGINX), lambda: run(self.p(NGINX), "put"))]
            if not self.tus_why:
                e.append((C_TUS, self.p("chunkd"), lambda: run(self.p("chunkd"), "tus")))
            if self.has(TUS_NODE):
                e.append((TUS_NODE, self.p(TUS_NODE), lambda: run(self.p(TUS_NODE), "tus")))
            e.append((C_SF, self.p("chunkd"), lambda: run(self.p("chunkd"), "sf")))
            self.measure(("5a. concurrent sessions", f"{n} sessions x {_size(part.size)}", "MB/s"), e,
                         plan.scale_reps, note=f"chunks of {_size(plan.scale_chunk)}; one connection per session")

    # -- 5b-d. in-process curves -----------------------------------------------------------------
    def commit(self) -> None:
        print("5b. commit time against file size ...", flush=True)
        sizes = list(self.plan.commit_sizes)
        res = anyio.run(inproc.commit_vs_size, self.work, self.source(), sizes, sizes[-1])
        self.r.scaling["commit"] = res
        for size, t in res["commit"].items():  # type: ignore[attr-defined]
            print(f"    commit {_size(size):>8s} {t * 1e3:9.2f} ms", flush=True)
        print(f"    cp {_size(sizes[-1])}: {res['cp']:.2f} s, with fsync {res['cp_fsync']:.2f} s", flush=True)

    def missing(self) -> None:
        print("5c. missing-range query against received ranges ...", flush=True)
        counts, reps = list(self.plan.range_counts), self.plan.range_reps
        # the bounded query Graph's nextExpectedRanges makes, and the full list (Service Fabric's ExpectedRanges)
        res = anyio.run(inproc.missing_vs_ranges, self.work, counts, reps, NEXT_EXPECTED_RANGES)
        full = anyio.run(inproc.missing_vs_ranges, self.work, counts, reps)
        self.r.scaling["missing"], self.r.scaling["missing_all"] = res, full
        for n, t in res.items():
            print(f"    {n:>9,} ranges: first {NEXT_EXPECTED_RANGES} gaps {t * 1e3:10.3f} ms, "
                  f"every gap {full[n] * 1e3:10.3f} ms", flush=True)
        self.r.scaling["chunk_inproc"] = anyio.run(inproc.chunk_cost_inproc, self.work, self.source(),
                                                    10 * self.plan.range_reps)

    def meta(self) -> None:
        print("5d. metadata operations against sessions in the store ...", flush=True)
        res = anyio.run(inproc.metadata_vs_sessions, self.work, list(self.plan.meta_counts), self.plan.meta_reps)
        self.r.scaling["metadata"] = res
        for n, ops in res.items():
            print(f"    {n:>9,} sessions: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in ops.items()), flush=True)

    # -- 6. memory ---------------------------------------------------------------------------------
    def rss(self) -> None:
        plan = self.plan
        src = self.source()
        part = Source(src.path, min(plan.rss_size, src.size), src.fd)
        copies = max(1, plan.rss_size // part.size)
        s = self.r.new("6. peak server RSS", f"{plan.rss_uploads} x {_size(plan.rss_size)} in {_size(plan.rss_chunk)} "
                       "chunks, concurrent", "MiB", higher_better=False,
                       note="sum of VmHWM over the server's process tree, fresh server process")
        print(f"6. {s.case}", flush=True)
        candidates: list[tuple[str, Peer, str]] = []
        kind = "sf" if self.tus_why else "tus"
        candidates.append((C_TUS if kind == "tus" else C_SF, Chunkd(self.work, label="chunkd-rss"), kind))
        if self.has(TUS_NODE):
            node = TusNode(self.work)
            node.name, node.workdir = "tus-node-rss", self.work / "tus-node-rss"
            candidates.append((TUS_NODE, node, "tus"))
        for label, peer, k in candidates:  # fresh processes: VmHWM counts from their start
            peer.start()
            try:
                if plan.sync:
                    os.sync()

                def one(c: Conn, k: str = k) -> None:
                    if k == "tus":
                        path = flows.tus_create(c, part.size * copies)
                        for j in range(copies):
                            flows.tus_patch(c, path, part, 0, part.size, plan.rss_chunk, at=j * part.size)
                    else:
                        for _ in range(copies):
                            flows.sf_upload(c, part, f"r/{uuid.uuid4().hex}", plan.rss_chunk)

                conns = [peer.conn() for _ in range(plan.rss_uploads)]
                fns: list[Callable[[], object]] = [lambda c=c: one(c) for c in conns]
                t = flows.timed(lambda: flows.parallel(fns))  # noqa: B023
                rss = peer.peak_rss_mib()
                s.add(label, rss)
                print(f"    {label:32s} {rss:9.1f} MiB peak  ({_mb_s(plan.rss_uploads * plan.rss_size, t):,.0f} "
                      f"MB/s aggregate)", flush=True)
                for c in conns:
                    c.close()
            except Exception as exc:
                self.r.skip(f"RSS on {label}", f"{type(exc).__name__}: {exc}"[:300])
            finally:
                peer.stop()
                shutil.rmtree(peer.workdir, ignore_errors=True)

    # -- 7, 8. object stores, several nodes (their own modules) ---------------------------------------
    def stores(self) -> None:
        object_store_section.run(self)

    def nodes(self) -> None:
        multi_node_section.run(self)

    # -- targets -----------------------------------------------------------------------------------
    def targets(self) -> None:
        targets.check(self.r, self.plan)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, few repetitions (seconds)")
    ap.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--reps", type=int, default=0, help="rounds per side-by-side measurement")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default bench/out/<timestamp>)")
    ap.add_argument("--work", type=Path, default=None, help="scratch directory for server data (default <out>/work)")
    ap.add_argument("--baseline", default="", metavar="REV",
                    help="also run REV's chunkd (git worktree + own venv, cached in bench/out/.baseline/) in the "
                    "same rounds and report current ÷ baseline per row")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    if args.reps:
        plan = replace(plan, reps=args.reps, small_reps=args.reps, many_reps=args.reps, scale_reps=args.reps)
    only = set(filter(None, args.only.split(","))) or set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # absolute: nginx is started with its own directory as -p and would resolve a relative path from there
    out = (args.out or Path(__file__).resolve().parent / "out" / stamp).resolve()
    work = (args.work or out / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    rerun = "bench/run" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else "")
    rerun += (f" --reps {args.reps}" if args.reps else "") + (f" --baseline {args.baseline}" if args.baseline else "")
    baseline = Baseline.prepare(args.baseline) if args.baseline else None  # a bad REV fails before anything starts
    results = Results("quick" if args.quick else "full", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), machine())
    install_cleanup()
    peers.LOGS[:] = [out / "logs"]
    t0 = time.monotonic()
    bench = Bench(plan, work, results, only)
    bench.baseline = baseline
    try:
        if only - {"stores", "nodes"}:  # those two start servers of their own
            bench.start_peers()
        for name in SECTIONS:
            if name in only:
                t1 = time.monotonic()
                try:
                    getattr(bench, name)()
                except Exception as exc:  # one broken section must not lose the others' figures
                    results.skip(f"the rest of section {name!r}", f"{type(exc).__name__}: {exc}"[:300])
                    traceback.print_exc()
                print(f"  ({name}: {time.monotonic() - t1:.1f} s)", flush=True)
                results.seconds = time.monotonic() - t0
                (out / "partial.json").write_text(json.dumps(asdict(results), default=str))  # survives a crash
        bench.targets()
    finally:
        stop_all()
        if bench.src is not None:
            os.close(bench.src.fd)
        shutil.rmtree(work, ignore_errors=True)
    results.seconds = time.monotonic() - t0
    if baseline:
        results.scaling["baseline"] = baseline.summary(results.series)  # into results.json
    md = save(results, out, rerun)
    stores_report.save(results, out)
    if baseline:
        md += "\n" + baseline.markdown(results.scaling["baseline"]["rows"], only)
        (out / "results.md").write_text(md)
    (out / "partial.json").unlink(missing_ok=True)
    print("\n" + md)
    print(f"written to {out}/ (results.md, results.json, overview.png, stores.png); rerun with: {rerun}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
