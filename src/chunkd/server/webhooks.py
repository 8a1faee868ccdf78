"""HTTP webhooks for upload lifecycle events: POST a JSON document to each configured URL, with retries.

A :class:`WebhookNotifier` subscribes to the engine's EventBus (``engine.events``) and delivers in the
background, so a slow or failing receiver never delays the upload request that caused the event. Each
delivery is retried ``retries`` times with exponential backoff on transport errors and non-2xx answers.
Delivery is at-least-once per process while that process runs; events of a process that dies with
deliveries still queued are lost (documented in docs/tus.md).

Body::

    {"event": "completed", "at": 1732250000.0, "pid": 1234,
     "upload": {"id", "family", "namespace", "key", "length", "offset", "state", "owner", "name",
                "content_type", "metadata", "expires_at"}, "detail": {...}}
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from chunkd.core.events import Event

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("chunkd.webhooks")


def event_document(event: Event) -> dict[str, Any]:
    s = event.session
    return {
        "event": event.kind, "at": event.at, "pid": os.getpid(),
        "upload": {"id": s.id, "family": s.family, "namespace": s.namespace, "key": s.key, "length": s.length,
                   "offset": s.received, "state": s.state.value, "owner": s.owner, "name": s.name,
                   "content_type": s.content_type, "metadata": s.metadata, "expires_at": s.expires_at},
        "detail": {k: v for k, v in event.detail.items() if isinstance(v, str | int | float | bool)},
    }


class WebhookNotifier:
    """An EventBus subscriber posting selected events to ``urls``."""

    def __init__(self, urls: list[str], kinds: frozenset[str] | None, retries: int = 5, backoff: float = 0.5,
                 timeout: float = 10.0) -> None:
        self.urls = urls
        self.kinds = kinds  # None = every kind
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, event: Event) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        document = event_document(event)
        for url in self.urls:
            task = asyncio.get_running_loop().create_task(self._deliver(url, document))
            self._tasks.add(task)  # keep a reference until done (the loop holds only weak ones)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, document: dict[str, Any]) -> None:
        # imported on first delivery: httpx pulls in its CLI's rich and pygments when they are installed,
        # ≈ 10 MiB and 50 ms that a server without webhooks should not pay
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = await self._client.post(url, json=document)
                if response.is_success:
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt == self.retries:
                log.warning("webhook %s for %s %s failed after %d attempts: %s", url, document["event"],
                            document["upload"]["id"], attempt + 1, problem)
                return
            await asyncio.sleep(delay)
            delay *= 2

    async def drain(self, grace: float = 5.0) -> None:
        """At shutdown: wait up to ``grace`` seconds for queued deliveries, drop the rest, close the HTTP client."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
            for task in list(self._tasks):
                task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def from_settings(urls: str, events: str, retries: int, backoff: float) -> WebhookNotifier | None:
    targets = [u.strip() for u in urls.split(",") if u.strip()]
    if not targets:
        return None
    kinds = None if events.strip() == "*" else frozenset(k.strip() for k in events.split(",") if k.strip())
    return WebhookNotifier(targets, kinds, retries=retries, backoff=backoff)
