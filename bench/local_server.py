"""A throw-away ``chunkd serve`` for the single-family benchmark scripts (``bench/*_upload.py``).

The full harness (``bench/run``) manages its peers in ``bench/peers.py``; these scripts only need one
chunkd on a free loopback port, a token for it, and a clean stop.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.peers import free_port

CHUNKD = [sys.executable, "-m", "chunkd.cli.main"]


def start_chunkd(data_dir: Path, *serve_args: str, port: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``chunkd serve`` with ``serve_args`` on ``port`` (0: a free one); return the process and its base URL
    once it answers."""
    port = port or free_port()
    proc = subprocess.Popen([*CHUNKD, "serve", "--port", str(port), "--data-dir", str(data_dir), *serve_args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(url + "/", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("chunkd did not start")


def token_for(data_dir: Path) -> str:
    """A full-access bearer token for the server using ``data_dir``."""
    return subprocess.run([*CHUNKD, "token", "--data-dir", str(data_dir)], capture_output=True, text=True,
                          check=True).stdout.strip()
