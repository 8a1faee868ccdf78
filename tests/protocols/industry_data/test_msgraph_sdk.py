"""msgraph-beta-sdk against chunkd's Industry Data API: connector model, validate builder, operation model."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chunkd.auth.permissions import INDUSTRYDATA_READWRITE_ALL
from chunkd.auth.tokens import issue_token, load_or_create_secret
from tests.protocols.industry_data.helpers import start_server
from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[3]
PYTHON = ROOT / ".venv-msgraph" / "bin" / "python"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory)


@pytest.mark.slow
def test_msgraph_beta_sdk_connector_validate_and_operation(server: ServerProcess, tmp_path: Path) -> None:
    if not PYTHON.exists():
        pytest.skip("msgraph-beta-sdk venv missing: run scripts/clients/msgraph.sh")
    token = issue_token(load_or_create_secret(server.data_dir), roles=[INDUSTRYDATA_READWRITE_ALL])
    out = tmp_path / "seen.json"
    proc = subprocess.run([str(PYTHON), str(Path(__file__).with_name("msgraph_client.py")), server.url, token,
                           str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(out.read_text())
    assert seen["type"] == "#microsoft.graph.industryData.azureDataLakeConnector"
    assert seen["display_name"] == "SDK connector" and seen["connector"] in seen["listed"]
    assert seen["status"] == "succeeded"
    assert seen["errors"] == [["RequiredFileNotFound", "roles.csv"]]
    assert ["OptionalFileNotFound", "classes.csv"] in seen["warnings"]
