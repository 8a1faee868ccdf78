"""One real ``chunkd serve`` process per test module (starting one per case would dominate the runtime)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def sf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with authentication on (the default), shared by the module's tests."""
    data_dir: Path = tmp_path_factory.mktemp("sf") / "data"
    server = ServerProcess(data_dir, []).start()
    yield server
    server.stop()
