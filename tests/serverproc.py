"""Run a real ``chunkd serve`` process on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A ``chunkd serve`` child process. ``start()`` waits until it answers; ``kill()`` is SIGKILL."""

    data_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    scheme: str = "http"
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, verify: object = False) -> ServerProcess:
        if not self.port:
            self.port = free_port()
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        env = {**os.environ, **self.env}
        cmd = [sys.executable, "-m", "chunkd.cli.main", "serve", "--port", str(self.port),
               "--data-dir", str(self.data_dir), *self.args]
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url + "/", timeout=1.0, verify=verify)  # type: ignore[arg-type]
                return self
            except httpx.TransportError:
                time.sleep(0.1)
            except Exception:
                return self  # answered, even if with a TLS/auth error
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def token(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "chunkd.cli.main", "token", "--data-dir", str(self.data_dir),
                              *args], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def kill(self) -> None:
        """SIGKILL the whole process group (uvicorn workers included)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
