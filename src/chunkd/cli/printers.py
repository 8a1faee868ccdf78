"""``chunkd printers add|list``: register Universal Print printers.

Writes go through the metadata store (engine resources), not through a running server, and the store is
shared between processes, so this works while ``chunkd serve`` runs on the same data directory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import anyio
import typer

from chunkd.auth.tokens import DEFAULT_TENANT

if TYPE_CHECKING:
    from chunkd.core.engine import Engine

T = TypeVar("T")

printers_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Universal Print printers.")

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="CHUNKD_DATA_DIR", help="data directory")]
Metadata = Annotated[str, typer.Option(envvar="CHUNKD_METADATA", help="sqlite | sqlite:///path | postgresql://...")]
Tenant = Annotated[str, typer.Option(help="tenant id (tid) the printer belongs to")]


async def _with_engine(data_dir: Path, metadata: str, fn: Callable[[Engine], Awaitable[T]]) -> T:
    from chunkd.settings import Settings
    from chunkd.wiring import open_engine, start_engine

    # the same wiring as the server's: CHUNKD_STORAGE and the other settings apply here too
    engine = open_engine(Settings(data_dir=data_dir, metadata=metadata))
    await start_engine(engine)
    try:
        return await fn(engine)
    finally:
        await engine.store.close()


@printers_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="display name")],
    data_dir: DataDir = Path("./chunkd-data"),
    tenant: Tenant = DEFAULT_TENANT,
    content_type: Annotated[list[str] | None, typer.Option(
        "--content-type", help="supported document type (repeatable); default: PDF, OXPS, JPEG, PNG, ...")] = None,
    metadata: Metadata = "sqlite",
) -> None:
    """Register a printer; prints its id last."""
    from chunkd.core.principal import Principal
    from chunkd.services.printers import Printers

    admin = Principal(kind="app", tenant=tenant, app="chunkd-cli")
    printer = anyio.run(_with_engine, data_dir, metadata,
                        lambda engine: Printers(engine).register(admin, name, content_type))
    typer.echo(f"registered printer {name!r} in tenant {tenant}", err=True)
    typer.echo(printer.id)


@printers_app.command("list")
def list_(data_dir: DataDir = Path("./chunkd-data"), tenant: Tenant = "", metadata: Metadata = "sqlite") -> None:
    """Print ``id<TAB>tenant<TAB>name`` of every printer (of one tenant with --tenant)."""
    from chunkd.services.printers import Printers

    printers = anyio.run(_with_engine, data_dir, metadata, lambda engine: Printers(engine).of_tenant(tenant or None))
    for p in printers:
        typer.echo(f"{p.id}\t{p.tenant}\t{p.display_name}")
