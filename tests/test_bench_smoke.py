"""Smoke runs of the benchmark harness (`bench/run --quick`), so it cannot rot.

No figure is asserted (speed belongs to bench/, not to tests); what is asserted is that one command
starts every server, measures every section, writes the table, the JSON and the plot, checks the
targets, and leaves no server process behind, also when interrupted with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from bench.harness import SECTIONS

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run"

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _pids(out: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (out / "logs").glob("*.pid")}


def _wait_dead(pids: dict[str, int], timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [name for name, pid in pids.items() if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def test_quick_run_writes_table_json_plot_and_target_verdicts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # sections 7 and 8 (object stores, several nodes) have a smoke test of their own: tests/test_bench_stores_smoke.py
    only = ",".join(s for s in SECTIONS if s not in ("stores", "nodes"))
    proc = subprocess.run([str(RUN), "--quick", "--only", only, "--out", str(out)], capture_output=True, text=True,
                          timeout=480)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    md = (out / "results.md").read_text()
    assert md in proc.stdout  # the table is printed, not only written
    assert "rerun with: bench/run --quick" in proc.stdout
    data = json.loads((out / "results.json").read_text())
    sections = {s["section"].split(".")[0] for s in data["series"]}
    assert {"1", "2", "3", "4", "5a", "6"} <= sections
    for s in data["series"]:
        for server, values in s["values"].items():
            assert values and all(v > 0 for v in values), (s["case"], server, values)
    # chunkd was measured by the driver in every side-by-side section; the null sink shows the driver's ceiling
    big = [s for s in data["series"] if s["section"].startswith("1.")]
    assert big and all("chunkd SF UploadChunk" in s["values"] for s in big)
    assert all("null sink (driver ceiling)" in s["values"] for s in big)
    assert {"commit", "missing", "metadata"} <= set(data["scaling"])
    verdicts = {t["name"]: t for t in data["targets"]}
    assert any(name.startswith("commit of") for name in verdicts)
    assert any(name.startswith("chunkd peak RSS") for name in verdicts)
    for t in data["targets"]:
        shown = "PASS" if t["measured"] is not None and (
            t["measured"] >= t["limit"] if t["op"] == ">=" else t["measured"] <= t["limit"]) else "MISS"
        if t["measured"] is None:
            shown = "SKIP"
        assert f"| {t['name']} |" in md and f"**{shown}**" in md
    png = out / "overview.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every server the harness started is gone, and its scratch data with it
    pids = _pids(out)
    assert {"chunkd", "chunkd-nodurable", "null-sink"} <= set(pids)
    assert _wait_dead(pids) == []
    assert not (out / "work").exists()


def test_ctrl_c_stops_every_server(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([str(RUN), "--quick", "--only", "small", "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until the servers run and the first measurement started
            if line.startswith("3. 64 KiB chunks"):
                break
        else:
            pytest.fail(f"the harness ended before measuring (exit {proc.wait()})")
        pids = _pids(out)
        assert {"chunkd", "null-sink"} <= set(pids) and all(_alive(p) for p in pids.values())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert _wait_dead(pids) == []


def test_baseline_with_an_unknown_revision_fails_before_starting_anything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([str(RUN), "--quick", "--baseline", "no-such-revision-0000", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--baseline: 'no-such-revision-0000' is not a commit" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "logs").exists()  # no server was started, no worktree or venv was made
    assert not list((ROOT / "bench" / "out" / ".baseline").glob("no-such*"))
