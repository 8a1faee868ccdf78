"""A smoke run of bench/object_store_clients.py (tiny sizes), so the client-library benchmark cannot rot.
No figure is asserted: only that it starts moto, measures every library it has and prints the table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance.s3moto import MOTO

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_object_store_clients_bench_prints_its_table() -> None:
    if not MOTO.exists():
        pytest.skip("moto is not installed (bash scripts/clients/moto.sh)")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "object_store_clients.py"), "--mib", "6",
                          "--puts", "5", "--reps", "1"], capture_output=True, text=True, timeout=300, check=True)
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in out.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| library")}
    assert {"obstore", "obstore (unsigned payload)", "boto3 defaults", "boto3 lean"} <= set(rows)
    for name, cells in rows.items():
        put_ms = float(cells[0])
        assert put_ms > 0, name
    assert rows["boto3 lean"][6].strip() != "-"  # UploadPartCopy measured where the library has it
