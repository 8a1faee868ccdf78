"""The seeds' printUploadSession lists integerRange objects; the seed samples write them as strings
("0", "1023"), chunkd sends numbers because that is what the SDKs' models read (issue 12, docs/graph-print.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.protocols.print.conftest import ALICE, PrintEnv

ROOT = Path(__file__).resolve().parents[3]
PYTHON = ROOT / ".venv-msgraph" / "bin" / "python"

pytestmark = pytest.mark.skipif(not PYTHON.exists(), reason="run scripts/clients/msgraph.sh to install msgraph")


def sdk_reads(ranges: list[dict[str, Any]]) -> list[list[Any]]:
    proc = subprocess.run([str(PYTHON), str(Path(__file__).with_name("sdk_integer_range.py"))],
                          input=json.dumps(ranges), capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(proc.stdout))


def test_the_python_sdk_reads_chunkds_integer_ranges(env: PrintEnv) -> None:
    alice = env.user(ALICE, "PrintJob.ReadWrite")
    _, _, doc = env.new_job(alice)
    session = env.open_seed_session(doc, alice, 1024).json()
    assert session["nextExpectedRanges"] == session["missingRanges"] == [{"start": 0, "end": 1023}]
    assert sdk_reads(session["nextExpectedRanges"]) == [[0, 1023]]
    # the seed sample's strings would reach an SDK user as None: kiota's get_int_value takes JSON numbers only
    assert sdk_reads([{"start": "0", "end": "1023"}]) == [[None, None]]
