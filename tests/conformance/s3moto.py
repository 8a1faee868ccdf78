"""A real S3 emulator for the tests: moto in server mode (``scripts/clients/moto.sh`` installs it into
``.venv-moto``), started once per test session on a free port of 127.0.0.1, with one bucket.

Each user gets its own key prefix in that bucket, so tests never see each other's objects. Credentials
are dummies set in this process's environment (moto accepts any), which both client libraries and
child ``chunkd serve`` processes read.
"""

from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serverproc import free_port

ROOT = Path(__file__).resolve().parents[2]
MOTO = ROOT / ".venv-moto" / "bin" / "moto_server"
BUCKET = "chunkd-test"

os.environ.setdefault("AWS_ACCESS_KEY_ID", "chunkd-test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "chunkd-test")


class Moto:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(ROOT / ".pytest_cache" / f"moto-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(self.port)], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not start (see {self.log.name})") from None
                time.sleep(0.05)
        self.client().create_bucket(Bucket=BUCKET)

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def url(self, prefix: str | None = None) -> str:
        """A ``--storage`` URL for a fresh prefix of the test bucket."""
        prefix = prefix or f"t-{secrets.token_hex(6)}"
        return f"s3://{BUCKET}/{prefix}?endpoint={self.endpoint}&region=us-east-1"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


_server: Moto | None = None


def moto() -> Moto:
    """The session's moto server, started on first use; skips the test when moto is not installed."""
    global _server
    if _server is None:
        if not MOTO.exists():
            pytest.skip("moto is not installed (bash scripts/clients/moto.sh)")
        (ROOT / ".pytest_cache").mkdir(exist_ok=True)
        _server = Moto()
        atexit.register(_server.stop)
    return _server
