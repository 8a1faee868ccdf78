"""Time for leases and expiry, measured on the metadata store's clock.

Several nodes on one metadata store must agree on when a claim's lease ends and when a session expires,
so the engine does not trust each machine's own clock. :class:`StoreClock` measures, at start-up and
then every ``refresh`` seconds, the offset between this process's clock and the store's clock (half the
round trip is the error bound, well under a millisecond on a LAN), and reads the local clock plus that
offset: no query per request. Tests inject any ``Callable[[], float]`` instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("chunkd.clock")

Clock = Callable[[], float]


class StoreClock:
    """``time.time()`` corrected by the measured offset to the store's clock."""

    def __init__(self, server_time: Callable[[], Awaitable[float]], refresh: float = 30.0) -> None:
        self._server_time = server_time
        self.refresh = refresh
        self.offset = 0.0
        self.error = float("inf")  # half the round trip of the last measurement, seconds

    def __call__(self) -> float:
        return time.time() + self.offset

    async def sync(self) -> None:
        """Measure the offset once (the best of three round trips)."""
        best: tuple[float, float] | None = None
        for _ in range(3):
            before = time.time()
            theirs = await self._server_time()
            after = time.time()
            half = (after - before) / 2
            if best is None or half < best[1]:
                best = (theirs - (before + half), half)
        assert best is not None
        if abs(best[0] - self.offset) > 0.5:
            log.warning("this machine's clock is %.3f s off the metadata store's; using the store's", best[0])
        self.offset, self.error = best
