"""``chunkd certs init``: a local CA, a server certificate and client certificates for HTTPS."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from chunkd.cli._hosts import is_loopback

certs_app = typer.Typer(no_args_is_help=True, help="Certificates for HTTPS with client certificates.")

_LOCAL_NAMES = ["localhost", "127.0.0.1", "::1"]


@certs_app.command("init")
def init(
    data_dir: Annotated[Path, typer.Option("--data-dir", envvar="CHUNKD_DATA_DIR", help="data directory")] = Path(
        "./chunkd-data"),
    host: Annotated[list[str] | None, typer.Option(
        "--host", help="name or address clients use to reach the server (repeatable); localhost, 127.0.0.1 "
                       "and ::1 are always included")] = None,
    port: Annotated[int, typer.Option(help="port shown in the printed commands")] = 19080,
    admin_name: Annotated[str, typer.Option(help="common name of the admin client certificate")] = "chunkd-admin",
    reader_name: Annotated[str, typer.Option(help="common name of the read-only client certificate")] = "chunkd-reader",
    force: Annotated[bool, typer.Option("--force", help="replace existing certificates (and the CA)")] = False,
) -> None:
    """Create DATA_DIR/tls/ with a CA, a server certificate and key, and admin and read-only client PEMs.

    Prints the `chunkd serve` and `sfctl cluster select` commands that use them. An existing set is kept
    (and its commands printed again) unless --force is given.
    """
    from chunkd.server.certs import LocalPKI

    hosts = list(dict.fromkeys([*(host or []), *_LOCAL_NAMES]))
    pki = LocalPKI(data_dir.resolve() / "tls")
    if pki.exists() and not force:
        missing = pki.uncovered(hosts)
        if missing:
            typer.echo(f"the server certificate in {pki.directory} is not valid for {', '.join(missing)}; "
                       "add --force to replace every certificate (clients then need the new ca.pem)", err=True)
            raise typer.Exit(1)
        typer.echo(f"keeping the certificates in {pki.directory} (--force replaces them)", err=True)
    else:
        pki.init(hosts, admin_name=admin_name, reader_name=reader_name)
        typer.echo(f"wrote a CA, a server certificate for {', '.join(hosts)} and client certificates "
                   f"{admin_name!r} (admin) and {reader_name!r} (read-only) to {pki.directory}", err=True)
    public = hosts[0]
    listen = "127.0.0.1" if is_loopback(public) else "0.0.0.0"
    url_host = f"[{public}]" if ":" in public else public
    q = shlex.quote
    serve = (f"chunkd serve --data-dir {q(str(data_dir.resolve()))} --host {listen} --port {port} "
             f"--tls-cert {q(str(pki.server_cert))} --tls-key {q(str(pki.server_key))} "
             f"--tls-client-ca {q(str(pki.ca))}")
    if admin_name != "chunkd-admin":
        serve += f" --tls-admin-names {q(admin_name)}"
    typer.echo("\n# start the server (HTTPS, client certificate required):")
    typer.echo(serve)
    typer.echo("\n# point sfctl at it as admin (use reader.pem for read-only access). sfctl 11.2.1 ignores --ca for")
    typer.echo("# most requests (msrest passes verify=True), so the CA also goes in REQUESTS_CA_BUNDLE:")
    typer.echo(f"export REQUESTS_CA_BUNDLE={q(str(pki.ca))}")
    typer.echo(f"sfctl cluster select --endpoint https://{url_host}:{port} --pem {q(str(pki.admin))} "
               f"--ca {q(str(pki.ca))}")
    typer.echo("\n# or with curl:")
    typer.echo(f"curl --cacert {q(str(pki.ca))} --cert {q(str(pki.admin))} "
               f"'https://{url_host}:{port}/ImageStore?api-version=6.0'")
