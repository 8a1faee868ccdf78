"""``--workers N``: one ``SO_REUSEPORT`` listening socket per worker, so the kernel spreads connections.

With one shared listening socket every worker waits on the same accept queue, and whichever wakes first
takes every connection queued at that moment (uvloop accepts in a loop): 8 connections opened together
were seen split 490:249, 110:566 and 8:0 between two workers, so one worker did most of the work while the
other core idled (bench/README.md, issue 14). With ``SO_REUSEPORT`` each worker listens on a socket of its
own bound to the same address and the kernel assigns every new connection to one of them by a hash of its
addresses and ports: an even split on average, and no worker can take another's share.

The sockets are bound and listening in the supervisor before any worker starts (the start-up line is still
printed only after that). uvicorn's supervisor hands the same socket list to every worker it spawns, so
the list is :class:`WorkerSockets`: when a spawned worker unpickles it, the worker takes the first *slot*
whose lock file nobody holds (``flock``, released by the kernel when the worker dies, so a replacement
takes the dead worker's slot and its socket) and closes the other sockets. A worker that finds every slot
taken (uvicorn starts a replacement before retiring the old worker on ``SIGHUP``) serves all of them, as a
shared accept queue would: nothing is refused, only the spreading is lost until the next restart.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

__all__ = ["WorkerSockets", "bind_reuseport", "reuseport_available"]

logger = logging.getLogger("chunkd.server")
STARTUP_FAILURE = 3  # uvicorn's exit code when the server did not start
_held: list[int] = []  # this worker's slot lock, open for the worker's lifetime


def reuseport_available() -> bool:
    """Linux (and the BSDs) have ``SO_REUSEPORT``; elsewhere the workers share one socket."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def bind_reuseport(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """``count`` listening sockets on ``host:port`` with ``SO_REUSEPORT`` (port 0: a free port).

    Exits with uvicorn's start-up failure code and a logged error when the address cannot be bound, as
    uvicorn's own ``bind_socket`` does -- also when another ``SO_REUSEPORT`` group of this user already
    listens there: the kernel would let this server join it and take a share of the other's connections,
    so a plain socket (which such a group refuses) is bound first and closed again."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
    except OSError as exc:
        for sock in socks:
            sock.close()
        logger.error("cannot listen on %s:%s: %s", host, port, exc)
        sys.exit(STARTUP_FAILURE)
    return socks


class WorkerSockets(list[socket.socket]):
    """The supervisor's listening sockets; unpickled in a spawned worker, only the worker's own one."""

    def __init__(self, socks: list[socket.socket], slots: Path) -> None:
        super().__init__(socks)
        self.slots = slots

    def __reduce__(self) -> tuple[Any, ...]:
        return (_claim, (list(self), str(self.slots)))


def _claim(socks: list[socket.socket], slots: str) -> list[socket.socket]:
    """In the worker: keep the socket of the first free slot and close the rest (all kept if none is free)."""
    for i, sock in enumerate(socks):
        fd = os.open(os.path.join(slots, f"slot-{i}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held.append(fd)
        for other in socks:
            if other is not sock:
                other.close()
        return [sock]
    return socks
