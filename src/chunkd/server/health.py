"""``/healthz`` and ``/readyz``: probes for a load balancer or an orchestrator, without authentication.

- ``/healthz`` says the process answers: always ``200 {"status": "ok"}``, no I/O.
- ``/readyz`` says this node can take uploads: the metadata store answers a read (an indexed lookup of a
  session id that does not exist, through the engine's store interface) and the byte store takes a write (a
  6-byte piece written and discarded through the byte-store interface). ``200`` with each check's result, or
  ``503`` with a JSON ``reason`` naming the failing store.

Each check is bounded by :data:`CHECK_TIMEOUT`. As the endpoint needs no credentials, a result is reused for
:data:`REUSE` seconds and concurrent probes share one check, so probing cannot be turned into a write load.
The answer names a failure's exception type only; the detail (which may name hosts or paths) goes to the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from chunkd.core.engine import Engine

log = logging.getLogger("chunkd.health")

CHECK_TIMEOUT = 2.0  # seconds per check; a store slower than this is not ready
REUSE = 1.0  # seconds a readiness result is reused
PROBE_ID = "chunkd-readyz-probe"  # never a real session id (those are UUIDs or random hex)
NO_STORE = {"Cache-Control": "no-store"}


class Readiness:
    """The readiness checks of one server process, with their last result."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = anyio.Lock()
        self._last: tuple[float, int, dict[str, Any]] | None = None

    async def _metadata(self) -> None:
        await self.engine.store.get(PROBE_ID)

    async def _storage(self) -> None:
        storage = self.engine.storage
        ref = storage.new_ref("readyz")
        try:
            writer = await storage.open_piece(ref, 0, durable=False)
            try:
                await writer.write(b"readyz")
                await writer.finish(False)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await writer.abort()
                raise
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CHECK_TIMEOUT):
                await storage.discard(ref)

    async def _run(self, name: str, check: Any) -> str | None:
        """None when ``check`` passed, else the reason."""
        try:
            with anyio.fail_after(CHECK_TIMEOUT):
                await check()
        except TimeoutError:
            log.warning("readiness: the %s store did not answer within %g s", name, CHECK_TIMEOUT)
            return f"{name} store: no answer within {CHECK_TIMEOUT:g} s"
        except Exception as exc:
            log.warning("readiness: the %s store failed: %s: %s", name, type(exc).__name__, exc)
            return f"{name} store: {type(exc).__name__}"
        return None

    async def check(self) -> tuple[int, dict[str, Any]]:
        async with self._lock:  # concurrent probes wait for one check and share its result
            if self._last is not None and time.monotonic() - self._last[0] < REUSE:
                return self._last[1], self._last[2]
            failures = {}
            for name, check in (("metadata", self._metadata), ("storage", self._storage)):
                reason = await self._run(name, check)
                if reason is not None:
                    failures[name] = reason
            checks = {n: ("failed" if n in failures else "ok") for n in ("metadata", "storage")}
            if failures:
                status, doc = 503, {"status": "unavailable", "reason": "; ".join(failures.values()),
                                    "checks": checks}
            else:
                status, doc = 200, {"status": "ready", "checks": checks}
            self._last = (time.monotonic(), status, doc)
            return status, doc


def health_routes(engine: Engine) -> list[BaseRoute]:
    readiness = Readiness(engine)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=NO_STORE)

    async def readyz(request: Request) -> Response:
        status, doc = await readiness.check()
        return JSONResponse(doc, status_code=status, headers=NO_STORE)

    return [Route("/healthz", healthz, methods=["GET", "HEAD"]), Route("/readyz", readyz, methods=["GET", "HEAD"])]
