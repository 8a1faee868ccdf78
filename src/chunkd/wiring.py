"""The one place that turns settings into a running engine: it opens the metadata store and the byte
store named by the settings (the only module that imports both backend packages), measures the
store's clock, and records the byte store's capabilities. The server (:mod:`chunkd.server.app`) and
the command line (``chunkd printers``) both build their engine here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from chunkd.auth.keys import Keys, load_keys
from chunkd.core.clock import StoreClock
from chunkd.core.engine import Engine, EngineConfig
from chunkd.core.outbox import DURABLE_KINDS
from chunkd.metadata import open_store
from chunkd.settings import Settings
from chunkd.storage import open_byte_store

log = logging.getLogger("chunkd.wiring")

__all__ = ["open_cluster_keys", "open_engine", "open_keys", "outbox_kinds", "run_blocking", "start_engine",
           "stop_engine"]

T = TypeVar("T")


def open_engine(settings: Settings) -> Engine:
    """The engine for ``settings`` (data directory, ``--storage``, ``--metadata``, lifetimes, limits).
    The caller migrates the metadata store and runs ``engine.clock.sync()`` (see :func:`start_engine`)."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.metadata, str(data_dir), durable=settings.durable)
    storage = open_byte_store(settings.storage, str(data_dir))
    config = EngineConfig(session_ttl=settings.session_ttl, tombstone_ttl=settings.tombstone_ttl,
                          durable=settings.durable, max_size=settings.max_size, outbox_kinds=outbox_kinds(settings))
    return Engine(store, storage, config, clock=StoreClock(store.server_time))


def outbox_kinds(settings: Settings) -> frozenset[str]:
    """The event kinds written to the store's outbox: those webhooks select, but never ``progress`` (a
    write per chunk); none without webhook URLs, so a server without webhooks writes no events."""
    if not settings.webhook_targets:
        return frozenset()
    kinds = settings.webhook_kinds
    return DURABLE_KINDS if kinds is None else DURABLE_KINDS & kinds


async def start_engine(engine: Engine) -> None:
    """Migrate the metadata store and measure its clock; logs the byte store's capabilities once."""
    await engine.store.migrate()
    if isinstance(engine.clock, StoreClock):
        await engine.clock.sync()
    log.info("byte store %s: %s", engine.storage.name, engine.capabilities.describe())


def open_keys(settings: Settings, engine: Engine) -> Keys:
    """The cluster's signing keys (see :mod:`chunkd.auth.keys`), after migrating the metadata store.
    Blocking: for start-up, also from inside a running event loop."""

    async def run() -> Keys:
        await engine.store.migrate()
        return await load_keys(engine.store, settings.data_dir.resolve())

    return run_blocking(run)


def open_cluster_keys(settings: Settings) -> Keys:
    """The keys of the cluster on ``settings.metadata`` without opening a byte store (``chunkd token``)."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.metadata, str(data_dir), durable=settings.durable)

    async def run() -> Keys:
        try:
            await store.migrate()
            return await load_keys(store, data_dir)
        finally:
            await store.close()

    return run_blocking(run)


def run_blocking(fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async start-up step to completion from synchronous code, even when this thread already
    runs an event loop (uvicorn calls the app factory inside its loop): in a thread of its own."""
    out: list[T] = []
    failed: list[BaseException] = []

    def target() -> None:
        try:
            out.append(anyio.run(fn))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=target, name="chunkd-start")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return out[0]


async def stop_engine(engine: Engine) -> None:
    """Release the engine's connections: the metadata store's, and the byte store's when it keeps any."""
    close = getattr(engine.storage, "aclose", None)
    if close is not None:
        await close()
    await engine.store.close()

