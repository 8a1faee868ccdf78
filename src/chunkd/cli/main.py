"""``chunkd serve`` and ``chunkd token``."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from chunkd.auth.permissions import ALL_ROLES
from chunkd.auth.tokens import DEFAULT_TENANT, issue_token
from chunkd.cli import serve_options
from chunkd.cli._hosts import is_loopback

# rich_markup_mode=None: plain click help and errors. Rich markup would eat help text in brackets
# ("s3://BUCKET[/PREFIX]", "[env: ...]") and box a bad value's error over several lines.
app = typer.Typer(add_completion=False, no_args_is_help=True, help="Resumable, chunked upload sessions.",
                  rich_markup_mode=None)

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="CHUNKD_DATA_DIR", help="data directory")]


def _tune_malloc() -> None:
    """Large request bodies make glibc malloc fault pages in and out; a higher mmap threshold and a lazy
    trim cut server CPU per GiB by ~40 % on this kind of machine (see bench/README.md)."""
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(4 << 20))
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(256 << 20))
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except OSError:
        pass


def _serve(given: dict[str, Any]) -> None:
    """Start the server: every API family on one port.

    Every option is also a CHUNKD_<NAME> variable and a key of the --config TOML file
    (docs/configuration.md); a flag beats a variable, a variable beats the file.
    """
    from pydantic import ValidationError

    from chunkd.config_file import ConfigFileError, unknown_env
    from chunkd.server.app import build_components, describe
    from chunkd.settings import Settings

    for warning in unknown_env(os.environ, Settings.model_fields):
        typer.echo(warning, err=True)
    from_env = {name for name in os.environ if name.startswith("CHUNKD_")}
    os.environ.update(serve_options.as_env(given))  # workers are separate processes: they read settings from here
    _tune_malloc()
    try:
        settings = Settings()
    except ConfigFileError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except ValidationError as exc:  # a bad flag, CHUNKD_* value or file key: one line per field, no traceback
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            typer.echo(f"Error: Invalid value for {_origin(field, given, from_env)}: "
                       f"{error['msg'].removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from exc
    # the same data directory and file for every worker, whatever their working directory
    os.environ["CHUNKD_DATA_DIR"] = str(settings.data_dir.resolve())
    if settings.config is not None:
        os.environ["CHUNKD_CONFIG"] = str(settings.config.resolve())
    _check(settings)
    try:
        components = build_components(settings)  # migrates the metadata store once, before workers race to
    except ValueError as exc:  # an unknown --storage / --metadata scheme and the like
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:
        if not _unreachable(exc):
            raise  # a bug: its traceback
        # a metadata database or byte store that cannot be reached or opened: one line, not a traceback
        typer.echo(f"Error: cannot open the stores: {_one_line(exc)}", err=True)
        raise typer.Exit(1) from exc
    anyio.run(components.engine.store.close)
    sys.stdout.flush()
    sys.stderr.flush()
    # become the lean server process (same pid): see chunkd.server.run; it prints the start-up line once the
    # port is bound
    argv = [sys.executable, "-m", "chunkd.server.run", describe(components)]
    os.execv(sys.executable, argv)  # noqa: S606 - a fixed argv, no shell


def _origin(field: str, given: dict[str, Any], from_env: set[str]) -> str:
    """Where a setting's bad value came from, named as the user wrote it."""
    if not field:
        return "the settings"  # a check across several settings
    if field in given:
        return f"'{serve_options.flag(field)}'"
    name = serve_options.env_name(field)
    return name if name in from_env else f"'{field}' in the config file"


def _unreachable(exc: BaseException) -> bool:
    """A store that cannot be reached or opened at start-up (the database, the bucket, the data directory)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from chunkd.core.errors import StorageFull, StorageUnavailable

    return isinstance(exc, OSError | OperationalError | DBAPIError | StorageUnavailable | StorageFull)


def _one_line(exc: BaseException) -> str:
    from chunkd.core.errors import ChunkdError
    from chunkd.server.redact import redact_text

    if isinstance(exc, ChunkdError) and exc.__cause__ is not None:
        exc = exc.__cause__  # the store's own error says why (the core error's text is meant for clients)
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy's wrapper adds a "Background on this error" link
    return redact_text(f"{type(cause).__name__}: {' '.join(str(cause).split())}")


def _check(settings: Any) -> None:
    """The settings' cross-checks, each a one-line error and exit code 2."""
    from chunkd.protocols.blob import check_account
    from chunkd.server.tls import TLSConfigError, uvicorn_tls_options

    # Checked on the settings, not the flags: CHUNKD_NO_AUTH / CHUNKD_TLS_* in the environment count too.
    if settings.no_auth and not is_loopback(settings.host) and not settings.force_no_auth:
        typer.echo(f"refusing --no-auth on non-loopback address {settings.host}: anyone who can reach it could "
                   "write and delete; add --force if you mean it", err=True)
        raise typer.Exit(2)
    try:
        uvicorn_tls_options(settings)  # a bad certificate or key is a one-line error here, not in the server
    except TLSConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    try:
        check_account(settings.blob_account)  # its path /{account} must not shadow another API family
    except ValueError as exc:
        typer.echo(f"CHUNKD_BLOB_ACCOUNT: {exc}", err=True)
        raise typer.Exit(2) from exc


app.command("serve")(serve_options.with_setting_options(_serve))


@app.command()
def token(
    data_dir: DataDir = Path("./chunkd-data"),
    user: Annotated[str, typer.Option(help="user object id (oid); makes a delegated token")] = "",
    app_id: Annotated[str, typer.Option("--app", help="application id (appid)")] = "chunkd-cli",
    tenant: Annotated[str, typer.Option(help="tenant id (tid)")] = DEFAULT_TENANT,
    scopes: Annotated[str, typer.Option(help="space-separated delegated permissions (scp)")] = "",
    roles: Annotated[str, typer.Option(help="space- or comma-separated application roles")] = "",
    hours: Annotated[float, typer.Option(help="lifetime in hours")] = 24.0,
    metadata: Annotated[str, typer.Option(
        envvar="CHUNKD_METADATA", help="the cluster's metadata store: sqlite | sqlite:///path | postgresql://...; "
        "every node on it accepts the token")] = "sqlite",
) -> None:
    """Print a bearer token the servers on this metadata store (by default: this data directory's) accept.

    Without --scopes and --roles the token has every role (full access).
    """
    from chunkd.settings import Settings
    from chunkd.wiring import open_cluster_keys

    secret = open_cluster_keys(Settings(data_dir=data_dir, metadata=metadata)).jwt_secret
    scope_list = scopes.replace(",", " ").split()
    role_list = roles.replace(",", " ").split()
    if not scope_list and not role_list:
        role_list = list(ALL_ROLES)
    if scope_list and not user:
        user = "00000000-0000-0000-0000-00000000a11c"
    typer.echo(issue_token(secret, tenant=tenant, user=user, app=app_id, scopes=scope_list, roles=role_list,
                           lifetime=hours * 3600))


from chunkd.cli.printers import printers_app  # noqa: E402 - sub-commands register after the main ones

app.add_typer(printers_app, name="printers")

from chunkd.cli.certs import certs_app  # noqa: E402

app.add_typer(certs_app, name="certs")

from chunkd.cli.upload import register as register_upload  # noqa: E402

register_upload(app)

from chunkd.cli._version import register as register_version  # noqa: E402

register_version(app)


def main() -> None:
    app(prog_name="chunkd")


if __name__ == "__main__":
    main()
