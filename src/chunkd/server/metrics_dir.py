"""The directory prometheus-client's multiprocess mode shares between the workers of one server.

With ``--workers N`` uvicorn spawns N processes that share the port: a scrape lands on any one of them,
so each process writes its counters to memory-mapped files in one directory and the scraped process
sums them all (:mod:`chunkd.server.metrics`). prometheus-client picks its mode when it is first
imported, from ``PROMETHEUS_MULTIPROC_DIR``: :func:`prepare` sets it in ``chunkd.server.run`` before
uvicorn spawns the workers, which inherit it. This module therefore must not import prometheus_client.

The directory is ``<data dir>/.metrics/<host>-<port>``: one per server (servers on one data directory
listen on different addresses), emptied at start -- counters start at zero with every server start, as
Prometheus expects of a restarted target -- and removed at a clean exit. A server killed hard leaves it
behind until its next start on that address.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from chunkd.settings import Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"

__all__ = ["ENV", "cleanup", "prepare"]


def prepare(settings: Settings) -> Path | None:
    """Create the empty directory and point ``PROMETHEUS_MULTIPROC_DIR`` at it when this server runs
    several workers with metrics on; otherwise clear the variable (one process counts in memory)."""
    if settings.workers <= 1 or settings.metrics == "off":
        os.environ.pop(ENV, None)
        return None
    name = re.sub(r"[^A-Za-z0-9.-]", "_", f"{settings.host}-{settings.port}")
    where = settings.data_dir.resolve() / ".metrics" / name
    shutil.rmtree(where, ignore_errors=True)  # a killed server's files would add to this one's counters
    where.mkdir(parents=True)
    os.environ[ENV] = str(where)
    return where


def cleanup(where: Path | None) -> None:
    if where is not None:
        shutil.rmtree(where, ignore_errors=True)
