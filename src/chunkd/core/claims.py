"""The one claim and take-over policy of every API family.

A writer claims its range in the metadata store (:meth:`SessionStore.claim`); the claim carries a lease
measured on the store's clock. While bytes flow the writer renews the lease before it writes, once its
last renewal is ``renew_interval`` old (:class:`Lease`). A claim whose lease ended -- its writer died with
its process or its node, or its client stalled -- is dropped by the next claim of an overlapping range:
a client's retry takes the range over within ``lease`` seconds. While a live writer holds part of the
range, the new writer waits (:func:`claim_free`), re-claiming with backoff, rather than failing at once.
"""

from __future__ import annotations

import time

import anyio

from chunkd.core.clock import Clock
from chunkd.core.errors import WriteInterrupted
from chunkd.core.store import Claimed, SessionStore, WriteIntent

__all__ = ["Lease", "claim_free"]


async def claim_free(store: SessionStore, intent: WriteIntent, clock: Clock, lease: float, wait: float) -> Claimed:
    """Claim ``intent``; while live claims of other writers hold part of it, re-claim (the same token
    keeps what it already holds) until they are recorded, released or their lease ends, for at most
    ``wait`` seconds. Returns the last result: the caller refuses the write when ``claim.busy`` is still
    non-empty (and must release what the token holds)."""
    deadline = time.monotonic() + wait
    delay = 0.01
    while True:
        claimed = await store.claim(intent, clock(), lease)
        if claimed.claim is None or not claimed.claim.busy or time.monotonic() >= deadline:
            return claimed
        if intent.create is not None and claimed.created:
            intent = WriteIntent(intent.session_id, intent.token, intent.start, intent.end, intent.mode,
                                 None, intent.guard)
        await anyio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.25)


class Lease:
    """A writer's side of its claim: renews it before writes once the last renewal is old."""

    def __init__(self, store: SessionStore, session_id: str, token: str, clock: Clock, lease: float,
                 renew_interval: float) -> None:
        self._store, self._sid, self._token, self._clock = store, session_id, token, clock
        self._lease, self._interval = lease, renew_interval
        self._renewed = time.monotonic()

    async def keep(self) -> None:
        """Call before anything of the claimed range reaches the byte store. Raises WriteInterrupted
        when a newer request took the range over (the caller must stop writing)."""
        if time.monotonic() - self._renewed > self._interval:
            if not await self._store.renew(self._sid, self._token, self._clock(), self._lease):
                raise WriteInterrupted("another request took over this range")
            self._renewed = time.monotonic()
