"""Upload lifecycle events, emitted by the engine for every API family.

Kinds: ``created``, ``progress``, ``completed`` (all bytes received), ``committed`` (published),
``deleted``, ``expired``. Subscribers are async callables; a failing subscriber is logged and never
fails the request that emitted the event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chunkd.core.models import Session

log = logging.getLogger("chunkd.events")


@dataclass(frozen=True)
class Event:
    kind: str
    session: Session
    at: float
    detail: dict[str, object] = field(default_factory=dict)


Subscriber = Callable[[Event], Awaitable[None]]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def emit(self, event: Event) -> None:
        for sub in self._subscribers:
            try:
                await sub(event)
            except Exception:
                log.exception("event subscriber failed for %s %s", event.kind, event.session.id)
