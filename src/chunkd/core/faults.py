"""Fault points: named instants where a test can make the process die (``exit``) or fail (``raise``),
so that crash recovery is tested at exact points rather than by luck.

``CHUNKD_FAULTS="after-record:exit,after-assemble:raise"`` arms points when the process starts; nothing
is armed otherwise, and an unarmed point costs one dict lookup. Points in the engine:

* ``small-written``: a small chunk's bytes are flushed, not yet recorded (on PostgreSQL inside the one
  transaction that holds the session: ``core.store.HeldWrites``);
* ``after-record``: a write's bytes are recorded (a complete session is COMMITTING), nothing published;
* ``after-assemble``: a commit published the object but has not recorded COMMITTED;
* ``after-commit``: COMMITTED is recorded, the staging area not yet discarded.
"""

from __future__ import annotations

import os

__all__ = ["FaultInjected", "reached"]


class FaultInjected(RuntimeError):
    """Raised at an armed ``raise`` point."""


def _armed(spec: str) -> dict[str, str]:
    points: dict[str, str] = {}
    for item in spec.split(","):
        name, _, action = item.strip().partition(":")
        if name:
            points[name] = action or "exit"
    return points


_POINTS = _armed(os.environ.get("CHUNKD_FAULTS", ""))


def reached(name: str) -> None:
    """Die or fail here if the point is armed."""
    action = _POINTS.get(name) if _POINTS else None
    if action == "exit":
        os._exit(86)  # like a kill -9: no cleanup, no flush of anything not yet durable
    if action == "raise":
        raise FaultInjected(name)
