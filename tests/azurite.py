"""One Azurite (the npm package that ``scripts/clients/azurite.sh`` installs into tests/clients/azurite)
for the whole test run, in disk mode (``--loose --skipApiVersionCheck``) in a temporary location on a
free port, started on first use and stopped when the run ends. Tests isolate themselves by prefix or
container, so one server (about 2 s to start) serves them all."""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import free_port

BINARY = Path(__file__).parent / "clients" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's
_endpoint: str | None = None
opened: list[Any] = []  # stores a test opened, for close_opened()


def endpoint() -> str:
    """``http://127.0.0.1:PORT/devstoreaccount1`` of the shared Azurite; skips the test without it."""
    global _endpoint
    if _endpoint is not None:
        return _endpoint
    if not BINARY.exists():
        pytest.skip("Azurite is not installed: run scripts/clients/azurite.sh")
    port = free_port()
    where = tempfile.mkdtemp(prefix="chunkd-azurite-")
    proc = subprocess.Popen([str(BINARY), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", where,
                             "--loose", "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(where, ignore_errors=True)

    atexit.register(stop)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("Azurite did not start")
            time.sleep(0.1)
    _endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
    return _endpoint


def storage_url(container: str, prefix: str = "") -> str:
    """An ``azure://`` storage URL for chunkd on the shared Azurite (AZURE_STORAGE_KEY=KEY)."""
    path = f"{container}/{prefix}".rstrip("/")
    return f"azure://{ACCOUNT}/{path}?endpoint={endpoint()}"


async def close_opened() -> None:
    """Close the connection pools of the stores opened since the last call (on the test's loop)."""
    while opened:
        await opened.pop().aclose()
