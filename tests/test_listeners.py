"""``server/listeners.py``: which listening socket a ``--workers`` worker keeps (the slot claim runs when the
spawned worker unpickles the supervisor's socket list; here it is called directly, one "worker" per call)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from chunkd.server import listeners


def _listening(n: int) -> list[socket.socket]:
    socks = listeners.bind_reuseport("127.0.0.1", 0, n, 8)
    assert len({s.getsockname() for s in socks}) == 1  # one address, n sockets
    return socks


@pytest.mark.skipif(not listeners.reuseport_available(), reason="SO_REUSEPORT is Linux-only here")
def test_each_claim_keeps_one_free_slot_and_a_claim_without_one_keeps_all(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listeners, "_held", [])
    groups: list[list[socket.socket]] = []

    def worker() -> tuple[list[socket.socket], list[socket.socket]]:
        """A worker's copies of two listening sockets, and what its claim keeps."""
        socks = _listening(2)
        groups.append(socks)
        return socks, listeners._claim(list(socks), str(tmp_path))

    try:
        socks, kept = worker()
        assert kept == [socks[0]] and socks[1].fileno() == -1  # the other one closed in this worker
        socks, kept = worker()
        assert kept == [socks[1]] and socks[0].fileno() == -1
        socks, kept = worker()  # a SIGHUP replacement while both slots are held: serves every socket
        assert kept == socks and all(s.fileno() >= 0 for s in socks)
        os.close(listeners._held.pop(0))  # the first worker dies: the kernel drops its lock
        socks, kept = worker()
        assert kept == [socks[0]]
    finally:
        for fd in listeners._held:
            os.close(fd)
        for group in groups:
            for s in group:
                s.close()


def test_a_port_already_taken_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(SystemExit) as exit_info:
            listeners.bind_reuseport("127.0.0.1", taken.getsockname()[1], 2, 8)
    assert exit_info.value.code == listeners.STARTUP_FAILURE
