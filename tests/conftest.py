from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start real ``chunkd serve`` processes: ``serve("--no-auth")``; all are stopped at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None,
              port: int = 0, scheme: str = "http") -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / "data", list(args), env or {}, port=port, scheme=scheme)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
