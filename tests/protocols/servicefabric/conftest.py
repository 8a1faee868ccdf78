"""One real ``chunkd serve`` process for this package's tests (starting one per case would dominate the runtime).

Tests share its store, so each works under its own paths and session ids."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess


@pytest.fixture(scope="package")
def sf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with authentication on (the default)."""
    data_dir: Path = tmp_path_factory.mktemp("sf") / "data"
    server = ServerProcess(data_dir, []).start(timeout=120)  # slow to start on a busy 2-core machine
    yield server
    server.stop()
