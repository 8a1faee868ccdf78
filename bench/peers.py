"""The servers under test: chunkd, @tus/server (Node, file store), nginx (``dav_methods PUT``), a null sink.

Each peer installs what it needs through the project's own files (``bench/peers/tus-node/package.json``,
the Debian ``nginx-light`` package, the chunkd checkout itself), listens on its own free port on
127.0.0.1 with its data on the same disk as the others, and is stopped by :func:`stop_all`, which the
harness runs on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.driver import Conn

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TUS_NODE = BENCH / "peers" / "tus-node"
HOST = "127.0.0.1"

_running: list[Peer] = []
LOGS: list[Path] = []  # where server logs go (set by the harness; default: next to the data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def stop_all() -> None:
    for peer in list(_running):
        peer.stop()


def install_cleanup() -> None:
    """Stop every started peer at exit, on SIGINT (Ctrl-C) and on SIGTERM."""
    atexit.register(stop_all)

    def on_signal(signum: int, _frame: object) -> None:
        stop_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Peer:
    """A server process in its own process group with a data directory it owns."""

    name = "peer"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir / self.name
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    # subclasses: command(), env(), files_dirs()
    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def files_dirs(self) -> list[Path]:
        """Where uploads land (wiped between runs, when no upload is running, to keep the disk from filling)."""
        return []

    def prepare(self) -> None:
        """Install and configure (idempotent); runs before the first start."""

    def start(self) -> Peer:
        self.prepare()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps a copy
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env()}, start_new_session=True, cwd=self.workdir)
        log.close()
        self.log_path.with_suffix(".pid").write_text(f"{self.proc.pid}\n")
        _running.append(self)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start listening on {HOST}:{self.port}")

    @property
    def log_path(self) -> Path:
        d = LOGS[0] if LOGS else self.workdir.parent
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{self.name}.log"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        if self in _running:
            _running.remove(self)

    def conn(self) -> Conn:
        return Conn(HOST, self.port)

    def peak_rss_mib(self) -> float:
        """Sum of VmHWM (peak resident set) over the server's process tree, MiB."""
        assert self.proc is not None
        return sum(_status_kib(p, "VmHWM") for p in _tree(self.proc.pid)) / 1024

    def wipe(self) -> None:
        for d in self.files_dirs():
            if not d.is_dir():
                continue
            for child in d.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)


class Chunkd(Peer):
    """``chunkd serve --no-auth`` (embedded default: SQLite + local files), durable acks on or off."""

    def __init__(self, workdir: Path, durable: bool = True, label: str = "") -> None:
        self.name = label or ("chunkd" if durable else "chunkd-nodurable")
        self.durable = durable
        super().__init__(workdir)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "chunkd.cli.main", "serve", "--port", str(self.port),
                "--data-dir", str(self.workdir / "data"), "--no-auth"]

    def env(self) -> dict[str, str]:
        return {"CHUNKD_DURABLE": "1" if self.durable else "0", "CHUNKD_LOG_LEVEL": "warning"}

    def files_dirs(self) -> list[Path]:
        data = self.workdir / "data"
        return [data / "objects", data / "staging", data / "store" / "objects", data / "store" / "staging"]


class TusNode(Peer):
    """@tus/server 2.x with @tus/file-store on Node (bench/peers/tus-node)."""

    name = "tus-node"

    @staticmethod
    def available() -> str:
        return "" if shutil.which("node") and shutil.which("npm") else "node/npm not installed"

    def prepare(self) -> None:
        marker = TUS_NODE / "node_modules" / ".package-lock.json"
        if marker.exists() and marker.stat().st_mtime >= (TUS_NODE / "package.json").stat().st_mtime:
            return
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=TUS_NODE,
                       check=True)

    def command(self) -> list[str]:
        return ["node", str(TUS_NODE / "server.mjs"), str(self.port), str(self.workdir / "files")]

    def files_dirs(self) -> list[Path]:
        return [self.workdir / "files"]


_apt_updated = False


def ensure_debian_package(binary: str, package: str) -> None:
    """``apt-get install -y package`` when ``binary`` is missing (``apt-get update`` once first)."""
    global _apt_updated
    if shutil.which(binary) or Path("/usr/sbin", binary).exists():
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        _apt_updated = True
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", package], check=True, env=env)


class Nginx(Peer):
    """nginx from Debian with ``dav_methods PUT``: the near-physical ceiling (no fsync, one worker)."""

    name = "nginx"

    def prepare(self) -> None:
        ensure_debian_package("nginx", "nginx-light")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("root", "tmp"):
            (self.workdir / sub).mkdir(exist_ok=True)

    def binary(self) -> str:
        return shutil.which("nginx") or "/usr/sbin/nginx"

    def command(self) -> list[str]:
        w = self.workdir
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""{user}worker_processes 1;
daemon off;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_temp_path {w}/tmp;
    server {{
        listen {HOST}:{self.port} reuseport;
        client_max_body_size 0;
        client_body_buffer_size 16m;
        location / {{
            root {w}/root;
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw;
        }}
    }}
}}
"""
        (w / "nginx.conf").write_text(conf)
        return [self.binary(), "-e", str(w / "error.log"), "-p", str(w), "-c", str(w / "nginx.conf")]

    def files_dirs(self) -> list[Path]:
        return [self.workdir / "root"]


class NullSink(Peer):
    """Reads every request body and discards it (bench/nullsink.py): the driver's own ceiling."""

    name = "null-sink"

    def command(self) -> list[str]:
        return [sys.executable, str(BENCH / "nullsink.py"), str(self.port)]
