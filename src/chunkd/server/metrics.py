"""Prometheus metrics at ``/metrics``: requests, bytes, chunk and flush latency, sessions, webhooks.

Sources, each as cheap as it can be on the per-request path:

* :class:`MetricsMiddleware`, a pure ASGI middleware: one request counter, one duration observation and
  the request body's byte count per request; family from the path's first segment (a dict lookup),
  operation from the route Starlette matched (cached per route and method);
* :class:`EngineMetrics`, the core's :class:`~chunkd.core.stats.EngineStats` port: new and duplicate
  bytes, chunk latency, flush latency, take-overs, storage errors;
* the engine's event bus: committed and expired sessions; :mod:`chunkd.server.webhooks` and
  :mod:`chunkd.server.outbox` report webhook attempts;
* at scrape time, from the metadata store: open sessions per family (at most :data:`OPEN_LIMIT` read).

With ``--workers N`` every worker writes to the directory :mod:`chunkd.server.metrics_dir` set up
before prometheus_client was imported, and a scrape -- whichever worker takes it -- sums them all.
Labels are bounded: families, route templates, status codes, event kinds; never ids or paths.
The metric table is in docs/metrics.md.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chunkd.auth.authenticator import Authenticator, Unauthenticated
from chunkd.auth.permissions import CHUNKD_ADMIN
from chunkd.cli._hosts import is_loopback  # the rule --no-auth uses (a module without the CLI's imports)
from chunkd.core.engine import Engine
from chunkd.core.events import Event
from chunkd.core.models import SessionState
from chunkd.core.stats import EngineStats
from chunkd.core.store import CountsCommits, SessionQuery
from chunkd.protocols.admin import PREFIX as ADMIN_PREFIX
from chunkd.server.metrics_dir import ENV
from chunkd.settings import Settings

log = logging.getLogger("chunkd.metrics")

__all__ = ["EngineMetrics", "MetricsMiddleware", "install", "policy", "webhook_abandoned", "webhook_attempt"]

MULTIPROCESS_DIR = os.environ.get(ENV)  # prometheus_client chose its mode from this when first imported
OPEN_LIMIT = 10_000  # open sessions a scrape reads at most (pages of 1000)
# the session families of the core under the names of their API families (as on the request metrics)
SESSION_FAMILIES = {"servicefabric": "sf", "graph-print": "print", "tus": "tus", "blobblock": "blob"}
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})

_registry = None if MULTIPROCESS_DIR else CollectorRegistry()  # multiprocess: the files are the registry
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_FLUSH = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

REQUESTS = Counter("chunkd_requests", "HTTP requests answered", ["family", "operation", "status"],
                   registry=_registry)
REQUEST_SECONDS = Histogram("chunkd_request_duration_seconds", "HTTP request duration, from the app receiving "
                            "the request to its last response byte", ["family"], buckets=_LATENCY, registry=_registry)
RECEIVED = Counter("chunkd_received_bytes", "request body bytes received", ["family"], registry=_registry)
NEW_BYTES = Counter("chunkd_new_bytes", "chunk bytes written that were not received before", ["family"],
                    registry=_registry)
DUPLICATE_BYTES = Counter("chunkd_duplicate_bytes", "chunk bytes received again (read and dropped)", ["family"],
                          registry=_registry)
CHUNK_SECONDS = Histogram("chunkd_chunk_duration_seconds", "engine time of one written chunk: claim, body, "
                          "flush, record", ["family"], buckets=_LATENCY, registry=_registry)
FLUSH_SECONDS = Histogram("chunkd_flush_duration_seconds", "byte store time to finish one piece (write out, "
                          "fdatasync when durable)", buckets=_FLUSH, registry=_registry)
COMMITTED = Counter("chunkd_sessions_committed", "sessions committed", ["family"], registry=_registry)
EXPIRED = Counter("chunkd_sessions_expired", "sessions expired (idle past their lifetime)", ["family"],
                  registry=_registry)
TAKEOVERS = Counter("chunkd_takeovers", "stale claims or commits taken over", ["kind"], registry=_registry)
STORAGE_ERRORS = Counter("chunkd_storage_errors", "storage failures while writing or committing", ["operation"],
                         registry=_registry)
WEBHOOK_ATTEMPTS = Counter("chunkd_webhook_deliveries", "webhook POSTs", ["result"], registry=_registry)
WEBHOOK_ABANDONED = Counter("chunkd_webhook_abandoned", "webhook events given up after every retry",
                            registry=_registry)
METADATA_COMMITS = Counter("chunkd_metadata_commits", "write transactions the metadata store committed (a group "
                           "commit's shared transaction once)", registry=_registry)
WORKERS = Gauge("chunkd_workers", "server processes serving", multiprocess_mode="livesum", registry=_registry)


def policy(settings: Settings) -> str:
    """``public``, ``auth`` or ``off``. ``auto`` is public only on a loopback address that no proxy
    fronts: with --public-url or --trust-proxy a loopback listener is reached through a proxy."""
    if settings.metrics != "auto":
        return settings.metrics
    behind_proxy = settings.public_url is not None or settings.trust_proxy
    return "public" if is_loopback(settings.host) and not behind_proxy else "auth"


def _children(metric: Any) -> Callable[..., Any]:
    """``metric.labels`` behind a dict: the per-request path pays one lookup, not the library's lock."""
    cache: dict[tuple[str, ...], Any] = {}

    def child(*values: str) -> Any:
        found = cache.get(values)
        if found is None:
            found = cache[values] = metric.labels(*values)
        return found
    return child


_requests, _request_seconds, _received = _children(REQUESTS), _children(REQUEST_SECONDS), _children(RECEIVED)
_new, _duplicate, _chunk_seconds = _children(NEW_BYTES), _children(DUPLICATE_BYTES), _children(CHUNK_SECONDS)
_webhooks = _children(WEBHOOK_ATTEMPTS)


class Families:
    """The API family of a request path, from its first segment (and the second for Graph's ``/beta``)."""

    def __init__(self, blob_account: str) -> None:
        self._first = {"ImageStore": "sf", "$": "sf", "": "sf", "v1.0": "print", "print-upload": "print",
                       "files": "tus", "blob": "blob", blob_account: "blob", "dashboard": "dashboard"}
        self._admin = ADMIN_PREFIX + "/"

    def __call__(self, path: str) -> str:
        cut = path.find("/", 1)
        first = path[1:cut] if cut > 0 else path[1:]
        if first == "beta":
            return "industry" if path.startswith("/beta/external/") else "print"
        if path.startswith(self._admin) or path == ADMIN_PREFIX:
            return "admin"  # under the blob account's default name, checked first
        return self._first.get(first, "other")


class MetricsMiddleware:
    """Counts every HTTP request: family, operation (method and route template), status, duration and
    body bytes. Pure ASGI: two small wrappers around receive/send, no request object."""

    def __init__(self, app: ASGIApp, families: Families) -> None:
        self.app = app
        self.families = families
        self._operations: dict[tuple[str, int], str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen = [0, 0]  # status, request body bytes

        async def counting_receive() -> Message:
            message = await receive()
            body = message.get("body")
            if body:
                seen[1] += len(body)
            return message

        async def status_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, counting_receive, status_send)
        finally:
            family = self.families(scope["path"])
            operation = self._operation(scope)
            if family == "blob":  # one route takes every blob operation: ?comp= tells them apart
                operation += _blob_comp(scope["query_string"])
            _requests(family, operation, str(seen[0] or 500)).inc()
            _request_seconds(family).observe(time.perf_counter() - started)
            if seen[1]:
                _received(family).inc(seen[1])

    def _operation(self, scope: Scope) -> str:
        route = scope.get("route")  # set by the router that matched (the innermost one, under a Mount)
        if route is None:
            return "unrouted"
        method = scope["method"]
        key = (method, id(route))
        found = self._operations.get(key)
        if found is None:
            verb = method if method in METHODS else "OTHER"
            found = self._operations[key] = f"{verb} {getattr(route, 'path', '') or type(route).__name__}"
        return found


# the ?comp= values of Azure Blob operations chunkd serves; any other value is counted as "other"
_COMPS = frozenset({"block", "blocklist", "appendblock", "page", "properties", "metadata", "list", "lease", "tags",
                    "copy", "batch", "acl", "stats", "snapshot", "expiry", "userdelegationkey", "blob"})


def _blob_comp(query: bytes) -> str:
    at = query.find(b"comp=")
    if at < 0 or (at and query[at - 1:at] != b"&"):
        return ""
    end = query.find(b"&", at)
    comp = query[at + 5:end if end >= 0 else len(query)].decode("latin-1").lower()
    return f"?comp={comp if comp in _COMPS else 'other'}"


class EngineMetrics(EngineStats):
    """The core's stats port as Prometheus series."""

    def write(self, family: str, new_bytes: int, duplicate_bytes: int, seconds: float) -> None:
        name = SESSION_FAMILIES.get(family, family)
        if new_bytes:
            _new(name).inc(new_bytes)
        if duplicate_bytes:
            _duplicate(name).inc(duplicate_bytes)
        _chunk_seconds(name).observe(seconds)

    def flush(self, seconds: float) -> None:
        FLUSH_SECONDS.observe(seconds)

    def takeover(self, kind: str, count: int = 1) -> None:
        TAKEOVERS.labels(kind).inc(count)

    def storage_error(self, operation: str) -> None:
        STORAGE_ERRORS.labels(operation).inc()


async def _lifecycle(event: Event) -> None:
    if event.kind == "committed":
        COMMITTED.labels(SESSION_FAMILIES.get(event.session.family, event.session.family)).inc()
    elif event.kind == "expired":
        EXPIRED.labels(SESSION_FAMILIES.get(event.session.family, event.session.family)).inc()


def webhook_attempt(ok: bool) -> None:
    """One webhook POST answered 2xx (``ok``) or failed."""
    _webhooks("delivered" if ok else "failed").inc()


def webhook_abandoned() -> None:
    WEBHOOK_ABANDONED.inc()


class _Snapshot:
    """Series read at scrape time (not in the shared files): open sessions per family."""

    def __init__(self, open_sessions: dict[str, int]) -> None:
        self._open = open_sessions

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("chunkd_sessions_open", f"open upload sessions in the metadata store (at most "
                                   f"{OPEN_LIMIT} counted)", labels=["family"])
        for name, count in sorted(self._open.items()):
            family.add_metric([name], count)
        yield family


class _Registry:
    """The single-process registry as a collector of a per-scrape registry."""

    def collect(self) -> Iterator[Metric]:
        assert _registry is not None
        yield from _registry.collect()


async def _open_sessions(engine: Engine) -> dict[str, int]:
    counts = {name: 0 for name in SESSION_FAMILIES.values()}
    after, seen = "", 0
    while seen < OPEN_LIMIT:
        page = await engine.store.find(SessionQuery(states=(SessionState.OPEN,), limit=1000, after=after))
        for s in page:
            name = SESSION_FAMILIES.get(s.family, s.family)
            counts[name] = counts.get(name, 0) + 1
        seen += len(page)
        if len(page) < 1000:
            break
        after = page[-1].id
    return counts


def render(open_sessions: dict[str, int]) -> bytes:
    """The exposition text: every worker's series (multiprocess) or this process's, and the snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS_DIR:
        _reap(MULTIPROCESS_DIR)
        MultiProcessCollector(registry, path=MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Registry())
    registry.register(_Snapshot(open_sessions))
    return generate_latest(registry)


def _reap(directory: str) -> None:
    """Drop the live gauges of workers that died without a clean exit (uvicorn restarted them)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = int(path.rsplit("_", 1)[1][:-3])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, another user's


def metrics_route(engine: Engine, authenticator: Authenticator, mode: str) -> Route:
    async def endpoint(request: Request) -> Response:
        if mode == "auth":
            try:
                principal = authenticator.authenticate(request.headers, request.scope)
            except Unauthenticated as exc:
                return JSONResponse({"error": {"code": "unauthenticated", "message": str(exc)}}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            if not principal.has_any(CHUNKD_ADMIN):
                return JSONResponse({"error": {"code": "accessDenied",
                                               "message": f"/metrics needs the {CHUNKD_ADMIN} role"}}, status_code=403)
        try:
            open_sessions = await _open_sessions(engine)
        except Exception:  # the other series are still worth a scrape; the gauge is left out
            log.warning("/metrics: could not count the open sessions", exc_info=True)
            open_sessions = {}
        body = await anyio.to_thread.run_sync(render, open_sessions)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
    return Route("/metrics", endpoint, methods=["GET", "HEAD"], name="metrics")


def install(app: Starlette, engine: Engine, authenticator: Authenticator, settings: Settings) -> None:
    """Serve ``/metrics`` under the settings' policy and count requests and engine work (nothing when off)."""
    mode = policy(settings)
    if mode == "off":
        return
    engine.stats = EngineMetrics()
    if isinstance(engine.store, CountsCommits):
        engine.store.on_commit = METADATA_COMMITS.inc
    engine.events.subscribe(_lifecycle)
    app.router.routes.insert(0, metrics_route(engine, authenticator, mode))
    app.add_middleware(MetricsMiddleware, families=Families(settings.blob_account))
    WORKERS.set(1)
    if MULTIPROCESS_DIR:
        inner = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(a: Starlette) -> AsyncIterator[Any]:
            async with inner(a) as state:
                yield state
            mark_process_dead(os.getpid(), MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]  # this worker's live gauges go with it

        app.router.lifespan_context = lifespan
