"""``chunkd --version``: the installed distribution's version (importlib.metadata, so it is the version pip or
uv installed, never a second copy kept in the source)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer


def installed_version() -> str:
    try:
        return version("chunkd")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _show(value: bool) -> None:
    if value:
        typer.echo(f"chunkd {installed_version()}")
        raise typer.Exit()


def main_options(
    version_: Annotated[bool, typer.Option("--version", callback=_show, is_eager=True,
                                           help="print chunkd's version and exit")] = False,
) -> None:
    """Resumable, chunked upload sessions."""


def register(app: typer.Typer) -> None:
    """Add the top-level ``--version`` option to ``chunkd``."""
    app.callback()(main_options)
