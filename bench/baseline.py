"""``bench/run --baseline REV``: every chunkd row measured against another revision in the same run.

Issue 11 asks that no row be slower than on the previous commit, measured in one run. REV is checked out
into a detached git worktree and installed into a venv of its own (``uv``, Python 3.11, ``-e '.[bench]'``),
both cached under ``bench/out/.baseline/<sha>/`` so a rerun starts at once. Its ``chunkd serve`` (durable
on and off) runs next to the current one, and every side-by-side entry on a current chunkd server gets a
twin on the baseline server, labelled ``<row> [baseline]``, that runs the *same* client code: the harness's
closures reach their server through a :class:`~bench.peers.Peer`, so pointing that object at the baseline's
port for the one call sends identical requests there. The twins join the alternating rounds, so background
load slows both alike; the report is ``current ÷ baseline`` per row.

The in-process sections (5b-5d) import the current checkout's engine and the RSS section (6) starts a fresh
current server; they are not compared (a note says so).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import flows
from bench.peers import BENCH, ROOT, Chunkd, Peer

SUFFIX = " [baseline]"
PASS_AT = 0.95  # current ÷ baseline; rounds on this shared 2-core machine scatter by a few percent
CACHE = BENCH / "out" / ".baseline"
UNCOMPARED = ("commit", "missing", "meta", "rss")

Entry = tuple[str, Peer, Callable[[], float]]


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)


def resolve(rev: str) -> str:
    """The full sha of commit ``rev``; ``SystemExit`` with a readable message when it names none (no network)."""
    p = _git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if p.returncode != 0 or not p.stdout.strip():
        raise SystemExit(f"bench/run --baseline: {rev!r} is not a commit in {ROOT} "
                         "(give a sha, tag or branch that `git rev-parse` knows; nothing is fetched)")
    return p.stdout.strip()


def install(sha: str) -> Path:
    """Worktree + venv for ``sha`` under ``bench/out/.baseline/<sha>/`` (idempotent; ``ready`` marks a
    finished install, so a half-done one is redone); the venv's python."""
    d = CACHE / sha
    tree, venv, ready = d / "tree", d / "venv", d / "ready"
    python = venv / "bin" / "python"
    if ready.exists() and python.exists() and (tree / "pyproject.toml").exists():
        return python
    d.mkdir(parents=True, exist_ok=True)
    if not (tree / "pyproject.toml").exists():
        shutil.rmtree(tree, ignore_errors=True)
        _git("worktree", "prune")
        p = _git("worktree", "add", "--detach", str(tree), sha)
        if p.returncode != 0:
            raise SystemExit(f"bench/run --baseline: git worktree add failed: {p.stderr.strip()}")
    uv = shutil.which("uv") or "uv"
    print(f"installing baseline {sha[:10]} into {venv} ...", flush=True)
    if not python.exists():
        subprocess.run([uv, "venv", "-q", str(venv), "--python", "3.11"], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), "-e", f"{tree}[bench]"], check=True)
    # PYTHONDONTWRITEBYTECODE is set on the bench machines: compile once so server start-up is alike
    subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0", str(tree / "src")], check=True)
    ready.write_text(sha + "\n")
    return python


class BaselineChunkd(Chunkd):
    """``chunkd serve`` from the baseline's venv, same flags and environment as :class:`Chunkd`."""

    def __init__(self, workdir: Path, python: Path, durable: bool = True) -> None:
        self.python = python
        super().__init__(workdir, durable, label="chunkd-baseline" if durable else "chunkd-baseline-nodurable")

    def command(self) -> list[str]:
        return [str(self.python), *super().command()[1:]]


@dataclass
class Baseline:
    rev: str
    sha: str
    python: Path
    peers: dict[str, Chunkd] = field(default_factory=dict)  # keyed like the harness's current chunkd peers
    printer: str = ""
    blob_sas: str = ""

    @classmethod
    def prepare(cls, rev: str) -> Baseline:
        sha = resolve(rev)
        return cls(rev, sha, install(sha))

    def start(self, work: Path) -> None:
        """Start the baseline servers and create their Graph printer and Industry Data session (when the
        baseline has those front ends; otherwise those twins fail and are skipped with a note)."""
        self.peers = {"chunkd": BaselineChunkd(work, self.python), "chunkd-nd": BaselineChunkd(work, self.python,
                                                                                             durable=False)}
        for peer in self.peers.values():
            print(f"starting {peer.name} ({self.sha[:10]}) ...", flush=True)
            peer.start()
        conn = self.peers["chunkd"].conn()
        try:
            self.printer = flows.graph_printer(conn)
        except Exception:  # the Graph twins then fail visibly in measure()
            self.printer = ""
        try:
            self.blob_sas = flows.blob_session(conn)
        except Exception:  # likewise the Blob twins
            self.blob_sas = ""
        conn.close()

    def expand(self, bench: Any, entries: list[Entry]) -> list[Entry]:
        """``entries`` with a baseline twin right after every entry on a current chunkd server."""
        out: list[Entry] = []
        for label, peer, fn in entries:
            out.append((label, peer, fn))
            key = next((k for k in self.peers if bench.peers.get(k) is peer), None)
            if key is not None:
                out.append((label + SUFFIX, self.peers[key], self._redirected(bench, peer, self.peers[key], fn)))
        return out

    def _redirected(self, bench: Any, current: Peer, base: Peer, fn: Callable[[], float]) -> Callable[[], float]:
        def run() -> float:
            saved = current.port, bench.printer, bench.blob_sas
            current.port, bench.printer, bench.blob_sas = base.port, self.printer, self.blob_sas
            try:
                return fn()
            finally:
                current.port, bench.printer, bench.blob_sas = saved
        return run

    def compare(self, series: list[Any]) -> list[dict[str, Any]]:
        """One row per (measurement, chunkd server) that has both figures: medians and current ÷ baseline."""
        rows = []
        for s in series:
            for label, vals in s.values.items():
                base = s.values.get(label + SUFFIX)
                if label.endswith(SUFFIX) or not base or not vals:
                    continue
                cur, old = statistics.median(vals), statistics.median(base)
                ratio = cur / old if s.higher_better else old / cur
                rows.append({"section": s.section, "case": s.case, "server": label, "unit": s.unit,
                             "current": cur, "baseline": old, "ratio": ratio, "runs": len(vals),
                             "verdict": "PASS" if ratio >= PASS_AT else "MISS"})
        return rows

    def summary(self, series: list[Any]) -> dict[str, Any]:
        return {"rev": self.rev, "sha": self.sha, "pass_at": PASS_AT, "rows": self.compare(series)}

    def markdown(self, rows: list[dict[str, Any]], only: set[str]) -> str:
        lines = [f"## Against the baseline {self.rev} ({self.sha[:10]})", "",
                 f"Current ÷ baseline of the medians (both servers in the same alternating rounds); PASS when "
                 f"≥ {PASS_AT} — the band allows for the few percent rounds scatter on a shared machine.", "",
                 "| measurement | server | current | baseline | unit | runs | current ÷ baseline | verdict |",
                 "|---|---|---:|---:|---|---:|---:|---|"]
        for r in rows:
            lines.append(f"| {r['section']}: {r['case']} | {r['server']} | {r['current']:,.1f} | "
                         f"{r['baseline']:,.1f} | {r['unit']} | {r['runs']} | {r['ratio']:.2f} | **{r['verdict']}** |")
        if not rows:
            lines.append("| (no row measured on both) | | | | | | | |")
        skipped = [s for s in UNCOMPARED if s in only]
        if skipped:
            lines += ["", f"Not compared: {', '.join(skipped)} (in-process engine curves and the fresh-process RSS "
                      "run measure the current checkout only)."]
        slower = sum(r["verdict"] != "PASS" for r in rows)
        lines += ["", f"{len(rows) - slower} of {len(rows)} rows PASS."]
        return "\n".join(lines) + "\n"
