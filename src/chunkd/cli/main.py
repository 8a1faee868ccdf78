"""``chunkd serve`` and ``chunkd token``."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Annotated

import anyio
import typer

from chunkd.auth.permissions import ALL_ROLES
from chunkd.auth.tokens import DEFAULT_TENANT, issue_token
from chunkd.cli._hosts import is_loopback

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Resumable, chunked upload sessions.")

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


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="CHUNKD_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="CHUNKD_PORT")] = 19080,
    data_dir: DataDir = Path("./chunkd-data"),
    workers: Annotated[int, typer.Option(envvar="CHUNKD_WORKERS", help="server processes")] = 1,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="switch authentication off")] = False,
    force: Annotated[bool, typer.Option("--force", help="allow --no-auth on a non-loopback address")] = False,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate for HTTPS")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM key for HTTPS")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(help="require client certificates from this CA")] = None,
    tls_client_auth: Annotated[str | None, typer.Option(
        envvar="CHUNKD_TLS_CLIENT_AUTH",
        help="with --tls-client-ca: 'required' (default) or 'optional' (certificate-less clients use tokens)",
    )] = None,
    tls_admin_names: Annotated[str | None, typer.Option(
        envvar="CHUNKD_TLS_ADMIN_NAMES",
        help="comma-separated client-certificate CNs or SHA-1 thumbprints with admin rights [default: chunkd-admin]",
    )] = None,
    metadata: Annotated[str | None, typer.Option(help="sqlite | sqlite:///path | postgresql://...")] = None,
    storage: Annotated[str | None, typer.Option(
        help="byte store: local | file:///path | s3://BUCKET[/PREFIX]?... | azure://ACCOUNT/CONTAINER?... "
             "| memory")] = None,
    public_url: Annotated[str | None, typer.Option(
        help="base of every URL handed out (tus Location, Graph uploadUrl, Industry Data sessionUrl), e.g. the "
             "load balancer's https://uploads.example.com [env var: CHUNKD_PUBLIC_URL]")] = None,
    trust_proxy: Annotated[bool | None, typer.Option(
        "--trust-proxy/--no-trust-proxy",
        help="without --public-url, build URLs from Forwarded / X-Forwarded-Host/Proto [env var: CHUNKD_TRUST_PROXY]",
    )] = None,
    session_ttl: Annotated[float | None, typer.Option(
        help="idle lifetime of an upload session, seconds [env var: CHUNKD_SESSION_TTL] [default: 1800]")] = None,
    max_size: Annotated[int | None, typer.Option(
        help="largest upload, bytes [env var: CHUNKD_MAX_SIZE] [default: 1 TiB]")] = None,
    durable: Annotated[bool | None, typer.Option(
        "--durable/--no-durable",
        help="fdatasync every chunk before acknowledging it [env var: CHUNKD_DURABLE] [default: durable]")] = None,
    max_header_bytes: Annotated[int | None, typer.Option(
        help="largest request head (request line + header fields), bytes; larger ones get 431 "
             "[env var: CHUNKD_MAX_HEADER_BYTES] [default: 65536]")] = None,
    max_headers: Annotated[int | None, typer.Option(
        help="most header fields in a request; more get 431 [env var: CHUNKD_MAX_HEADERS] [default: 100]")] = None,
    header_timeout: Annotated[float | None, typer.Option(
        help="seconds to complete a request head, then 408 and close "
             "[env var: CHUNKD_HEADER_TIMEOUT] [default: 30]")] = None,
    keep_alive_timeout: Annotated[int | None, typer.Option(
        help="seconds an idle keep-alive connection stays open [env var: CHUNKD_KEEP_ALIVE_TIMEOUT] "
             "[default: 75]")] = None,
    max_connections: Annotated[int | None, typer.Option(
        help="open connections per server process; more get 503 [env var: CHUNKD_MAX_CONNECTIONS] "
             "[default: 2048]")] = None,
    metrics: Annotated[str | None, typer.Option(
        help="/metrics: public | auth (Chunkd.Admin token) | off; auto = public on a loopback address without "
             "--public-url/--trust-proxy, else auth [env var: CHUNKD_METRICS] [default: auto]")] = None,
) -> None:
    """Start the server: every API family on one port."""
    from chunkd.server.app import build_components, describe

    env = {"CHUNKD_HOST": host, "CHUNKD_PORT": str(port), "CHUNKD_DATA_DIR": str(data_dir.resolve()),
           "CHUNKD_WORKERS": str(workers)}
    if no_auth:
        env["CHUNKD_NO_AUTH"] = "1"
    for name, value in (("TLS_CERT", tls_cert), ("TLS_KEY", tls_key), ("TLS_CLIENT_CA", tls_client_ca),
                        ("TLS_CLIENT_AUTH", tls_client_auth), ("TLS_ADMIN_NAMES", tls_admin_names),
                        ("METADATA", metadata), ("STORAGE", storage), ("SESSION_TTL", session_ttl),
                        ("MAX_SIZE", max_size), ("DURABLE", None if durable is None else int(durable)),
                        ("MAX_HEADER_BYTES", max_header_bytes), ("MAX_HEADERS", max_headers),
                        ("HEADER_TIMEOUT", header_timeout), ("KEEP_ALIVE_TIMEOUT", keep_alive_timeout),
                        ("MAX_CONNECTIONS", max_connections), ("PUBLIC_URL", public_url),
                        ("TRUST_PROXY", None if trust_proxy is None else int(trust_proxy)), ("METRICS", metrics)):
        if value is not None:
            env[f"CHUNKD_{name}"] = str(value.resolve() if isinstance(value, Path) else value)
    os.environ.update(env)  # workers are separate processes: they read their settings from here
    _tune_malloc()

    from pydantic import ValidationError

    from chunkd.protocols.blob import check_account
    from chunkd.server.tls import TLSConfigError, uvicorn_tls_options
    from chunkd.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:  # a bad option or CHUNKD_* value: one line per field, not a traceback
        for error in exc.errors():
            typer.echo(f"invalid CHUNKD_{'_'.join(map(str, error['loc'])).upper()}: {error['msg']}", err=True)
        raise typer.Exit(2) from exc
    # Checked on the settings, not the flags: CHUNKD_NO_AUTH / CHUNKD_TLS_* in the environment count too.
    if settings.no_auth and not is_loopback(settings.host) and not (force or settings.force_no_auth):
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
    components = build_components(settings)  # migrates the metadata store once, before workers race to
    anyio.run(components.engine.store.close)
    typer.echo(describe(components), err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # become the lean server process (same pid): see chunkd.server.run
    os.execv(sys.executable, [sys.executable, "-m", "chunkd.server.run"])  # noqa: S606 - a fixed argv, no shell


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
