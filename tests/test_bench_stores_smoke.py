"""Smoke run of bench/run's object-store and multi-node sections (`bench/run --quick --only stores,nodes`).

No figure is asserted (speed belongs to bench/); what is asserted is that the one command starts moto,
Azurite, PostgreSQL-backed nodes and the raw client, measures every row it promises (chunkd tus, chunkd
SF and the raw client on each store; 1, 2 and 3 nodes), writes the tables, the JSON and stores.png,
drops the database it created and leaves no server process behind.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.test_bench_smoke import RUN, _pids, _wait_dead

ROOT = Path(__file__).resolve().parent.parent
MOTO = ROOT / ".venv-moto" / "bin" / "moto_server"
AZURITE = ROOT / "tests" / "clients" / "azurite" / "node_modules" / ".bin" / "azurite-blob"

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _databases() -> set[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3") as c:
            # only the bench's own databases: other test files on other xdist workers create and drop theirs meanwhile
            return {row[0] for row in c.execute("SELECT datname FROM pg_database WHERE datname LIKE 'chunkd_bench%'")}
    except Exception as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")


def test_quick_stores_and_nodes(tmp_path: Path) -> None:
    if not MOTO.exists():
        pytest.skip("moto is not installed (bash scripts/clients/moto.sh)")
    if not AZURITE.exists():
        pytest.skip("Azurite is not installed (bash scripts/clients/azurite.sh)")
    before = _databases()
    out = tmp_path / "out"
    proc = subprocess.run([str(RUN), "--quick", "--only", "stores,nodes", "--out", str(out)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rerun with: bench/run --quick --only stores,nodes" in proc.stdout
    data = json.loads((out / "results.json").read_text())
    assert not [n for n in data["notes"] if n.startswith("skipped")], data["notes"]
    series = {(s["section"], s["case"]): s["values"] for s in data["series"]}
    for store in ("S3 (moto)", "Blob (Azurite)"):
        rows = {case: v for (section, case), v in series.items() if section.startswith("7.") and case.startswith(store)}
        rate = next(v for case, v in rows.items() if case.endswith("parts"))
        assert set(rate) == {"chunkd tus", "chunkd SF UploadChunk", "raw obstore multipart"}
        assert any("÷ raw" in case for case in rows)
        assert all(x > 0 for v in rows.values() for vals in v.values() for x in vals), rows
    nodes = {case: v for (section, case), v in series.items() if section.startswith("8.")}
    mb = next(v for case, v in nodes.items() if case.endswith("chunks"))
    assert set(mb) == {"1 node", "2 nodes", "3 nodes"} and all(x > 0 for vals in mb.values() for x in vals)
    assert {"MB/s 2 ÷ 1", "MB/s 3 ÷ 1"} <= set(nodes["scaling (per round, ÷ 1 node)"])
    md = (out / "results.md").read_text()
    assert "## Object stores" in md and "## Several nodes" in md
    assert (out / "stores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pids = _pids(out)
    assert {"moto", "azurite", "chunkd-s3", "chunkd-azure", "moto-nodes", "chunkd-node2"} <= set(pids)
    assert _wait_dead(pids) == []
    assert _databases() - before == set()  # its chunkd_bench_* database is dropped
