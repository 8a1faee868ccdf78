"""The outbox delivery loop: every node with webhooks configured runs one, and any of them may deliver
any event (:mod:`chunkd.core.outbox` says what the store guarantees).

Each round claims the due events with a lease of ``lease`` seconds on the store's clock, POSTs each to
every URL (concurrently; the document carries the event's id), marks it delivered when every URL
answered 2xx, otherwise gives it back with exponential backoff, abandoning it (logged) after
``retries + 1`` attempts. A node that dies holding events leaves them to whichever node claims them
once the lease ends, so a receiver may see an event twice: it de-duplicates on ``id``. Receivers that
failed for one URL of several see the event again on the next attempt, the URLs that accepted it too.

The loop polls every ``poll`` seconds (a read, no lock, when nothing is due) and at once when this node
emits an event it writes to the outbox. Delivered and abandoned rows are purged ``retention`` seconds
after they finished.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING

import anyio

from chunkd.core import faults
from chunkd.core.engine import Engine
from chunkd.core.events import Event
from chunkd.core.outbox import OutboxEvent
from chunkd.server.metrics import webhook_abandoned
from chunkd.server.redact import redact_url
from chunkd.server.webhooks import event_document, http_client, post

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("chunkd.webhooks")

__all__ = ["OutboxDeliverer"]


class OutboxDeliverer:
    """Delivers the outbox's events to ``urls``; :meth:`run` until cancelled."""

    def __init__(self, engine: Engine, urls: list[str], *, retries: int = 5, backoff: float = 0.5,
                 lease: float = 30.0, poll: float = 0.5, batch: int = 20, retention: float = 86400.0) -> None:
        self.engine = engine
        self.urls = urls
        self.retries = retries
        self.backoff = backoff
        self.lease = lease
        self.timeout = min(10.0, lease / 2)  # a post must end well inside the lease that covers it
        self.poll = poll
        self.batch = batch
        self.retention = retention
        self.node = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._wake: anyio.Event | None = None
        self._client: httpx.AsyncClient | None = None

    async def nudge(self, event: Event) -> None:
        """EventBus subscriber: this node just wrote an outbox event, deliver without waiting for the poll."""
        if event.kind in self.engine.config.outbox_kinds and self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        next_purge = 0.0
        try:
            while True:
                self._wake = anyio.Event()
                try:
                    full = await self.deliver_due() >= self.batch
                    if self.engine.clock() >= next_purge:
                        await self.engine.store.purge_events(self.engine.clock() - self.retention)
                        next_purge = self.engine.clock() + 60.0
                except Exception:
                    log.exception("webhook outbox delivery failed")
                    full = False
                if not full:
                    with anyio.move_on_after(self.poll):
                        await self._wake.wait()
        finally:
            if self._client is not None:
                with anyio.CancelScope(shield=True):
                    await self._client.aclose()

    async def deliver_due(self) -> int:
        """One round: claim the due events and deliver them; returns how many were claimed."""
        claimed = await self.engine.store.claim_events(self.node, self.engine.clock(), self.lease, self.batch)
        if claimed:
            faults.reached("webhook-claimed")  # crash tests: die holding leases, before posting
        async with anyio.create_task_group() as tg:
            for event in claimed:
                tg.start_soon(self._deliver, event)
        return len(claimed)

    async def _deliver(self, event: OutboxEvent) -> None:
        if self._client is None:
            self._client = http_client(self.timeout)
        client = self._client
        document = event_document(Event(event.kind, event.session, event.at, event.detail), event.id)
        problems: list[str] = []

        async def one(url: str) -> None:
            problem = await post(client, url, document)
            if problem is not None:
                problems.append(f"{redact_url(url)}: {problem}")  # logged: the URL's credentials stay out

        async with anyio.create_task_group() as tg:
            for url in self.urls:
                tg.start_soon(one, url)
        store, now = self.engine.store, self.engine.clock()
        if not problems:
            await store.event_delivered(event.id, self.node, now)
            return
        if event.attempts > self.retries:
            webhook_abandoned()
            log.warning("webhook %s for %s %s abandoned after %d attempts: %s", event.id, event.kind,
                        event.session.id, event.attempts, "; ".join(problems))
            await store.event_failed(event.id, self.node, now, None)
            return
        await store.event_failed(event.id, self.node, now, now + self.backoff * 2 ** (event.attempts - 1))
