"""Builds the ASGI application: one engine, one authenticator, every protocol front end on one port."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute

from chunkd.auth.authenticator import Authenticator
from chunkd.auth.keys import Keys
from chunkd.auth.tokens import TokenVerifier
from chunkd.auth.urlsign import UrlSigner
from chunkd.core.clock import StoreClock
from chunkd.core.engine import Engine
from chunkd.core.errors import StorageFull
from chunkd.protocols._hot import HotPath
from chunkd.protocols._http import PublicUrls
from chunkd.protocols._routing import unrouted
from chunkd.protocols.admin import AdminAPI
from chunkd.protocols.blob import BlobAPI
from chunkd.protocols.graph_print import GraphPrintAPI
from chunkd.protocols.industry_data import IndustryDataAPI, IndustryDataConfig
from chunkd.protocols.servicefabric import ServiceFabricAPI
from chunkd.protocols.tus import TusAPI, TusConfig
from chunkd.server.access_log import AccessLog
from chunkd.server.dashboard import dashboard_routes
from chunkd.server.health import health_routes
from chunkd.server.metrics import install as install_metrics
from chunkd.server.outbox import OutboxDeliverer
from chunkd.server.webhooks import from_settings as webhooks_from_settings
from chunkd.settings import Settings
from chunkd.wiring import open_engine, open_keys, start_engine, stop_engine

log = logging.getLogger("chunkd.server")


@dataclass
class Components:
    settings: Settings
    engine: Engine
    authenticator: Authenticator
    keys: Keys


def build_components(settings: Settings) -> Components:
    """The engine, the cluster's keys (this migrates the metadata store) and the authenticator."""
    engine = open_engine(settings)
    keys = open_keys(settings, engine)
    verifier = TokenVerifier(keys.jwt_secret, settings.jwks_file, settings.jwt_issuer, settings.jwt_audience)
    admin_names = frozenset(n.strip() for n in settings.tls_admin_names.split(",") if n.strip())
    authenticator = Authenticator(verifier, enabled=not settings.no_auth, admin_names=admin_names)
    return Components(settings, engine, authenticator, keys)


def describe(c: Components) -> str:
    """The one start-up line: address, data directory, storage, metadata store, auth mode."""
    s = c.settings
    auth = c.authenticator.mode
    if s.tls_client_ca:
        auth += "+client-cert" if s.tls_client_auth == "required" else "+optional-client-cert"
    return (f"chunkd listening on {s.scheme}://{s.host}:{s.port} data={s.data_dir.resolve()} "
            f"storage={c.engine.storage.name} metadata={c.engine.store.name} auth={auth} workers={s.workers}")


def create_app(settings: Settings | None = None) -> Starlette:
    c = build_components(settings or Settings())
    s = c.settings
    # durable kinds go through the store's outbox, delivered by any node; progress stays in-process
    notifier = webhooks_from_settings(s.webhook_targets, s.webhook_kinds, s.webhook_retries, s.webhook_backoff,
                                      skip=c.engine.config.outbox_kinds)
    if notifier is not None:
        c.engine.events.subscribe(notifier)
    deliverer = None
    if c.engine.config.outbox_kinds:
        deliverer = OutboxDeliverer(c.engine, s.webhook_targets, retries=s.webhook_retries, backoff=s.webhook_backoff,
                                    lease=s.webhook_lease, retention=s.tombstone_ttl)
        c.engine.events.subscribe(deliverer.nudge)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await start_engine(c.engine)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_sweeper, c.engine, c.settings.sweep_interval)
            if isinstance(c.engine.clock, StoreClock):
                tg.start_soon(_clock_keeper, c.engine.clock)
            if deliverer is not None:
                tg.start_soon(deliverer.run)
            yield
            tg.cancel_scope.cancel()
        if notifier is not None:
            await notifier.drain()  # give queued webhook deliveries a last chance before exiting
        await stop_engine(c.engine)

    routes: list[BaseRoute] = []
    fabric = ServiceFabricAPI(c.engine, c.authenticator)
    routes += fabric.routes
    routes += GraphPrintAPI(c.engine, c.authenticator, UrlSigner(c.keys.upload_url)).routes
    tus = TusAPI(c.engine, c.authenticator, _tus_config(c.settings))
    routes += tus.routes
    blob_key = c.keys.blob_account
    routes += IndustryDataAPI(c.engine, c.authenticator, blob_key, IndustryDataConfig(
        c.settings.industry_session_ttl, c.settings.industry_container_ttl, c.settings.blob_account)).routes
    routes += AdminAPI(c.engine, c.authenticator).routes
    routes += dashboard_routes()  # static page over the admin API
    routes += health_routes(c.engine)  # /healthz, /readyz: no auth (server/health.py)
    # last: the blob account's top-level path (/chunkd by default) is shared with the admin API's /chunkd/v1
    routes += BlobAPI(c.engine, blob_key, c.settings.blob_account, _origins(c.settings)).routes
    # 404/405 for paths and methods no route takes, in the format of the family the path belongs to
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: unrouted})
    # innermost (added first): chunk requests (tus PATCH, SF UploadChunk) skip the router's scan of every
    # route; metrics and the access log, outside it, see them as before (protocols/_hot.py)
    app.add_middleware(HotPath, routes=[*fabric.hot_routes, *tus.hot_routes], router=app.router)
    if s.access_log:  # --access-log: one line per request (server/access_log.py); absent, it costs nothing
        app.add_middleware(AccessLog)
    # -- Prometheus /metrics and the request/engine counters behind it (chunkd.server.metrics) --
    install_metrics(app, c.engine, c.authenticator, s)
    app.state.components = c
    app.state.public_urls = PublicUrls(c.settings.public_url, c.settings.trust_proxy)
    return app


def _origins(s: Settings) -> tuple[str, ...]:
    return tuple(o.strip() for o in s.cors_origins.split(",") if o.strip())


def _tus_config(s: Settings) -> TusConfig:
    return TusConfig(max_size=min(s.tus_max_size or s.max_size, s.max_size), expiration=s.tus_expiration,
                     cors_origins=_origins(s), min_size=s.ietf_min_size, max_append_size=s.ietf_max_append_size,
                     min_append_size=s.ietf_min_append_size)


def create_app_from_env() -> Starlette:
    """Factory for uvicorn workers: settings come from CHUNKD_* variables set by ``chunkd serve``."""
    return create_app(Settings())


async def _clock_keeper(clock: StoreClock) -> None:
    while True:
        await anyio.sleep(clock.refresh)
        try:
            await clock.sync()
        except Exception:
            log.warning("could not read the metadata store's clock", exc_info=True)


async def _sweeper(engine: Engine, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        try:
            expired = await engine.sweep()
            if expired:
                log.info("expired %d idle sessions (pid %d)", expired, os.getpid())
        except StorageFull as exc:  # an operator's matter, not a bug: one line per sweep, no traceback
            log.warning("expiry sweep stopped: %s; it runs again in %g s", exc.message, interval)
        except Exception:
            log.exception("expiry sweep failed")
