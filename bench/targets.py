"""The targets bench/run checks at the end of a run, each a same-run ratio or figure with PASS / MISS.

Issue 14's targets for small chunks sit next to the earlier ones: the 64 KiB durable and durable-off
rates against @tus/server, the server's CPU per request (from its own ``/proc`` times), PostgreSQL
commits per chunk and its rate against SQLite, 1,000 small files, ``--workers 2`` against one worker,
and chunkd's one-connection durable rate as a fraction of what the disk allows without group commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.report import NGINX, TUS_NODE, Results, Series, Target
from chunkd.protocols.graph_print import NEXT_EXPECTED_RANGES

if TYPE_CHECKING:
    from bench.harness import Plan


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _conns(n: int) -> str:
    return f"{n} connection{'s' if n > 1 else ''}"


def check(r: Results, plan: Plan) -> None:
    from bench.harness import C_PG, C_SF, C_SF_ND, C_TUS, C_TUS_ND, C_W2, _size

    add = r.targets.append
    big = r.find("1. one upload", f"{_size(plan.big)} in {_size(plan.chunks[0])} chunks")
    tus, ngx, node = (big.median(C_TUS), big.median(NGINX), big.median(TUS_NODE)) if big else (None,) * 3
    case = big.case if big else "section 1"
    add(Target("tus upload ≥ 0.9x nginx", _ratio(tus, ngx), 0.9, ">=", case))
    add(Target("tus upload ≥ 1.2x @tus/server", _ratio(tus, node), 1.2, ">=", case))
    small: dict[int, Series | None] = {n: r.find("3. 64 KiB chunks", _conns(n)) for n in plan.small_conns}
    for conns, sm in small.items():
        med = sm.median if sm else (lambda _label: None)
        want = 2.0 if conns > 1 else 1.0
        for label, what in ((C_TUS, "tus PATCH"), (C_SF, "SF UploadChunk")):
            add(Target(f"64 KiB durable {what} ≥ {want:g}x @tus/server ({conns} conn)",
                       _ratio(med(label), med(TUS_NODE)), want, ">=", "requests/s, durable acks on"))
        for label, what in ((C_TUS_ND, "tus PATCH"), (C_SF_ND, "SF UploadChunk")):
            add(Target(f"64 KiB durable off {what} ≥ 2x @tus/server ({conns} conn)",
                       _ratio(med(label), med(TUS_NODE)), 2.0, ">=", "requests/s, CHUNKD_DURABLE=0"))
        cpu = r.find("3. 64 KiB chunks", f"server CPU per request, {_conns(conns)}")
        for label in (C_TUS, C_SF):
            add(Target(f"server CPU per 64 KiB request ≤ 0.6 ms ({label}, {conns} conn)",
                       cpu.median(label) if cpu else None, 0.6, "<=", "CPU-ms, /proc utime + stime of the server"))
        add(Target(f"PostgreSQL metadata ≥ 0.7x SQLite ({conns} conn)", _ratio(med(C_PG), med(C_TUS)), 0.7,
                   ">=", "tus PATCH/s, durable, same local files"))
        if conns > 1:
            add(Target(f"--workers 2 ≥ 1.7x --workers 1 ({conns} conn)", _ratio(med(C_W2), med(C_TUS)), 1.7,
                       ">=", "tus PATCH/s, durable"))
    pgc = r.scaling.get("pg_commits_per_chunk")
    add(Target("PostgreSQL commits per 64 KiB chunk ≤ 2", max(pgc) if pgc else None, 2.0, "<=",
               "write transactions committed (chunkd's /metrics), the worst of the 1- and 8-connection runs; "
               "transaction ids, all commits and WAL flushes in the notes"))
    many = next((s for s in r.series if s.section.startswith("4.")), None)
    files = _ratio(many.median(C_TUS), many.median(TUS_NODE)) if many else None
    add(Target(f"{many.case if many else 'many small files'} ≥ 1.5x @tus/server (tus)", files, 1.5, ">=",
               "files/s, durable"))
    lim = r.scaling.get("machine_limits")
    sm1 = small.get(1)
    if lim and sm1 and sm1.median(C_TUS):
        floor = 1 / (lim["fdatasync_64k"] + lim["wal_commit"])
        frac = (sm1.median(C_TUS) or 0) / floor
        # not a goal of its own (a note, no verdict): how much of a 1-connection durable ack is the device
        r.scaling["durable_fraction_1conn"] = frac
        r.notes.append(f"chunkd tus durable, 1 connection: {sm1.median(C_TUS):,.0f}/s = {frac:.2f} of "
                       f"1 / (fdatasync + WAL commit) = {floor:,.0f}/s measured in this run")
    _earlier(r, plan, small.get(1))


def _earlier(r: Results, plan: Plan, sm1: Series | None) -> None:
    """The targets of issues before 14: commit time, missing-range query, peak memory."""
    from bench.harness import C_SF, C_TUS, _size

    c = r.scaling.get("commit")
    if c:
        commits = c["commit"]
        largest = commits[max(commits)]
        r.targets.append(Target(f"commit of {_size(max(commits))} ≤ 1 % of cp (with fsync)",
                                100 * largest / c["cp_fsync"], 1.0, "<=", "percent of the copy time"))
        r.targets.append(Target("commit time flat across sizes (largest ÷ smallest)",
                                largest / commits[min(commits)], 2.0, "<=",
                                f"{_size(min(commits))} … {_size(max(commits))}"))
    m = r.scaling.get("missing")
    chunk_rate = (sm1.median(C_TUS) or sm1.median(C_SF)) if sm1 else None
    if m and chunk_rate:
        n = max(m)
        r.targets.append(Target(f"missing-range query on {n:,} ranges < 1 % of one 64 KiB chunk request "
                                f"(first {NEXT_EXPECTED_RANGES} gaps)",
                                100 * m[n] * chunk_rate, 1.0, "<=",
                                f"percent; chunk request = {1e3 / chunk_rate:.2f} ms (1 conn, durable)"))
    rs = r.find("6. peak server RSS", next((s.case for s in r.series if s.section.startswith("6.")), ""))
    if rs:
        ck = rs.median(C_TUS) or rs.median(C_SF)
        r.targets.append(Target("chunkd peak RSS ≤ 150 MiB", ck, 150, "<=", rs.case))
        nd = rs.median(TUS_NODE)
        r.targets.append(Target("chunkd peak RSS below @tus/server's (ratio)", _ratio(ck, nd), 1.0, "<=",
                                "chunkd ÷ @tus/server"))
