"""HTTP webhooks for upload lifecycle events: POST a JSON document to each configured URL, with retries.

Two paths, both POSTing the same document:

* ``created``, ``completed``, ``committed``, ``deleted`` and ``expired`` go through the metadata store's
  event outbox (:mod:`chunkd.core.outbox`): the engine writes each in the transaction of the state change
  that causes it, and the delivery loop of *any* live node (:mod:`chunkd.server.outbox`) claims it with a
  lease, posts it and marks it delivered. At least once, across node deaths; one ``completed`` and one
  ``committed`` per session even when two nodes race; ``id`` is the same on every attempt, so receivers
  de-duplicate on it.
* ``progress`` would cost a database write per chunk, so it stays in-process: a :class:`WebhookNotifier`
  subscribed to the engine's EventBus posts it in the background with retries; progress events of a
  process that dies with deliveries queued are lost.

Each delivery is retried ``retries`` times with exponential backoff on transport errors and non-2xx
answers; a slow or failing receiver never delays the upload request that caused the event.

Body::

    {"id": "<event id>", "event": "completed", "at": 1732250000.0, "pid": 1234,
     "upload": {"id", "family", "namespace", "key", "length", "offset", "state", "owner", "name",
                "content_type", "metadata", "expires_at"}, "detail": {...}}

``pid`` is the delivering process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import TYPE_CHECKING, Any

from chunkd.core.events import Event
from chunkd.server.metrics import webhook_abandoned, webhook_attempt
from chunkd.server.redact import redact_url

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("chunkd.webhooks")


def event_document(event: Event, event_id: str | None = None) -> dict[str, Any]:
    """The JSON document of ``event``; ``event_id`` is the outbox row's id (a fresh one otherwise)."""
    s = event.session
    return {
        "id": event_id or uuid.uuid4().hex, "event": event.kind, "at": event.at, "pid": os.getpid(),
        "upload": {"id": s.id, "family": s.family, "namespace": s.namespace, "key": s.key, "length": s.length,
                   "offset": s.received, "state": s.state.value, "owner": s.owner, "name": s.name,
                   "content_type": s.content_type, "metadata": s.metadata, "expires_at": s.expires_at},
        "detail": {k: v for k, v in event.detail.items() if isinstance(v, str | int | float | bool)},
    }


class WebhookNotifier:
    """An EventBus subscriber posting selected events to ``urls`` (``skip``: kinds the outbox delivers)."""

    def __init__(self, urls: list[str], kinds: frozenset[str] | None, retries: int = 5, backoff: float = 0.5,
                 timeout: float = 10.0, skip: frozenset[str] = frozenset()) -> None:
        self.urls = urls
        self.kinds = kinds  # None = every kind
        self.skip = skip
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, event: Event) -> None:
        if (self.kinds is not None and event.kind not in self.kinds) or event.kind in self.skip:
            return
        document = event_document(event)
        for url in self.urls:
            task = asyncio.get_running_loop().create_task(self._deliver(url, document))
            self._tasks.add(task)  # keep a reference until done (the loop holds only weak ones)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, document: dict[str, Any]) -> None:
        if self._client is None:
            self._client = http_client(self.timeout)
        delay = self.backoff
        for attempt in range(self.retries + 1):
            problem = await post(self._client, url, document)
            if problem is None:
                return
            if attempt == self.retries:
                webhook_abandoned()
                # a webhook URL often carries its receiver's credential (user info, a token in the query)
                log.warning("webhook %s for %s %s failed after %d attempts: %s", redact_url(url), document["event"],
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


def http_client(timeout: float) -> httpx.AsyncClient:
    # imported on first delivery: httpx pulls in its CLI's rich and pygments when they are installed,
    # ≈ 10 MiB and 50 ms that a server without webhooks should not pay
    import httpx

    return httpx.AsyncClient(timeout=timeout)


async def post(client: httpx.AsyncClient, url: str, document: dict[str, Any]) -> str | None:
    """POST ``document``; None when the receiver answered 2xx, else what went wrong."""
    import httpx

    try:
        response = await client.post(url, json=document)
    except httpx.HTTPError as exc:
        webhook_attempt(False)
        return f"{type(exc).__name__}: {exc}"
    webhook_attempt(response.is_success)
    return None if response.is_success else f"HTTP {response.status_code}"


def from_settings(urls: list[str], kinds: frozenset[str] | None, retries: int, backoff: float,
                  skip: frozenset[str] = frozenset()) -> WebhookNotifier | None:
    """The in-process notifier for the selected kinds not in ``skip`` (what the outbox carries), or None."""
    if not urls or (kinds is not None and not kinds - skip):
        return None
    return WebhookNotifier(urls, kinds, retries=retries, backoff=backoff, skip=skip)
