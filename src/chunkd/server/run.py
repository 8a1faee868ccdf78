"""The process ``chunkd serve`` turns into: uvicorn serving the app, with only the server's imports.

``chunkd serve`` parses its options into ``CHUNKD_*`` variables, checks them, migrates the metadata
store, then replaces itself (``exec``, same pid) with ``python -m chunkd.server.run``. The server so
starts without the CLI's typer/rich/pygments and without alembic, ≈ 20 MiB less resident memory per
process (bench section 6), and ``--workers N`` children import only this module too.

The listening socket is bound here, before any worker starts, and the start-up line (``argv[1]``, made by
``chunkd serve``) is printed only then: whoever waits for that line can connect at once. The same socket is
handed to the one server (TLS is applied per connection by uvicorn). With ``--workers N`` the supervisor
binds N ``SO_REUSEPORT`` sockets instead, one per worker, so that the kernel spreads connections across
the workers (``server/listeners.py``).
"""

from __future__ import annotations

import atexit
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import uvicorn
from uvicorn.supervisors import Multiprocess

from chunkd.server.limits import raise_fd_limit
from chunkd.server.listeners import WorkerSockets, bind_reuseport, reuseport_available
from chunkd.server.logs import log_config
from chunkd.server.metrics_dir import cleanup as cleanup_metrics_dir
from chunkd.server.metrics_dir import prepare as prepare_metrics_dir
from chunkd.server.tls import uvicorn_tls_options
from chunkd.settings import Settings

STARTUP_FAILURE = 3  # uvicorn's exit code when the server did not start


def main(argv: list[str]) -> None:
    settings = Settings()
    ssl, http = uvicorn_tls_options(settings)  # http: the protocol class with chunkd's head and connection limits
    raise_fd_limit(settings.max_connections)
    atexit.register(cleanup_metrics_dir, prepare_metrics_dir(settings))  # before a worker imports prometheus_client
    config = uvicorn.Config(
        "chunkd.server.app:create_app_from_env", factory=True, host=settings.host, port=settings.port,
        workers=settings.workers, loop="uvloop", http=http, log_level=settings.log_level,
        # applied again in every worker process uvicorn spawns (chunkd.server.logs)
        log_config=log_config(settings.log_level, settings.log_format, settings.access_log),
        timeout_keep_alive=settings.keep_alive_timeout,
        access_log=False,  # chunkd.server.access_log writes chunkd's own (--access-log)
        ws="none",  # chunkd serves no WebSockets: an Upgrade header must not hand the connection elsewhere
        # forwarded headers count only with --trust-proxy, and chunkd reads them itself (every family)
        proxy_headers=False,
        # uvicorn kills a worker that does not answer its health ping within this many seconds. The
        # default 5 s is shorter than a spawned worker's imports on a busy 2-core machine, which made
        # --workers N restart its workers forever.
        timeout_worker_healthcheck=30, **ssl)
    server = uvicorn.Server(config)
    # listening from here on: a client that connects after the start-up line waits in the backlog until a
    # server accepts, instead of being refused
    sockets = _listen(config)
    if len(argv) > 1:
        print(argv[1], file=sys.stderr, flush=True)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=sockets).run()
        else:
            server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    if config.workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)


def _listen(config: uvicorn.Config) -> list[socket.socket]:
    """The listening socket(s); both paths exit with a logged error when the port is taken."""
    if config.workers > 1 and reuseport_available():
        slots = Path(tempfile.mkdtemp(prefix="chunkd-listeners-"))
        atexit.register(shutil.rmtree, slots, ignore_errors=True)
        return WorkerSockets(bind_reuseport(config.host, config.port, config.workers, config.backlog), slots)
    sock = config.bind_socket()
    sock.listen(config.backlog)  # bind_socket only binds
    return [sock]


if __name__ == "__main__":
    main(sys.argv)
