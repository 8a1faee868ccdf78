"""The process ``chunkd serve`` turns into: uvicorn serving the app, with only the server's imports.

``chunkd serve`` parses its options into ``CHUNKD_*`` variables, checks them, migrates the metadata
store, then replaces itself (``exec``, same pid) with ``python -m chunkd.server.run``. The server so
starts without the CLI's typer/rich/pygments and without alembic, ≈ 20 MiB less resident memory per
process (bench section 6), and ``--workers N`` children import only this module too.
"""

from __future__ import annotations

import atexit

import uvicorn

from chunkd.server.limits import raise_fd_limit
from chunkd.server.metrics_dir import cleanup as cleanup_metrics_dir
from chunkd.server.metrics_dir import prepare as prepare_metrics_dir
from chunkd.server.tls import uvicorn_tls_options
from chunkd.settings import Settings


def main() -> None:
    settings = Settings()
    ssl, http = uvicorn_tls_options(settings)  # http: the protocol class with chunkd's head and connection limits
    raise_fd_limit(settings.max_connections)
    atexit.register(cleanup_metrics_dir, prepare_metrics_dir(settings))  # before a worker imports prometheus_client
    uvicorn.run("chunkd.server.app:create_app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, loop="uvloop", http=http, log_level=settings.log_level,
                timeout_keep_alive=settings.keep_alive_timeout, access_log=False,
                ws="none",  # chunkd serves no WebSockets: an Upgrade header must not hand the connection elsewhere
                # forwarded headers count only with --trust-proxy, and chunkd reads them itself (every family)
                proxy_headers=False,
                # uvicorn kills a worker that does not answer its health ping within this many seconds. The
                # default 5 s is shorter than a spawned worker's imports on a busy 2-core machine, which made
                # --workers N restart its workers forever.
                timeout_worker_healthcheck=30, **ssl)


if __name__ == "__main__":
    main()
