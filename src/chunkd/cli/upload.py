"""``chunkd upload`` and ``chunkd sessions``: the client side of chunkd on the command line.

Exit codes of ``chunkd upload`` (scripts may rely on them):

====  ==========================================================================
0     every file uploaded (and verified, with ``--verify``)
1     at least one upload failed (network, server error, retries exhausted)
2     bad usage: unknown protocol, chunk size outside the protocol's limits, missing file
3     verification failed: the server's copy differs in size or sha256
4     the server refused the credentials (401 / 403)
130   interrupted (Ctrl-C); run the same command again to resume
====  ==========================================================================
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_VERIFY, EXIT_AUTH, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b?)\s*", re.IGNORECASE)

sessions_app = typer.Typer(no_args_is_help=True, help="List, inspect and cancel upload sessions on a chunkd server.")

DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", envvar="CHUNKD_DATA_DIR",
    help="a local server's data directory: a full-access token is made from its key when no token is given")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="CHUNKD_TOKEN", help="bearer token")]
ServerOpt = Annotated[str, typer.Option("--server", envvar="CHUNKD_URL", help="chunkd server URL")]


def parse_size(text: str) -> int:
    """``8M``, ``8MiB``, ``512k``, ``1048576`` -> bytes (binary units)."""
    m = _SIZE.fullmatch(text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a size (e.g. 8M, 512k, 1048576)")
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * (1024 ** " kmgt".index(unit or " ")))


def resolve_token(token: str | None, data_dir: Path | None) -> str | None:
    """``--token`` / ``CHUNKD_TOKEN``, else one made from a local data directory's HS256 key (never created here)."""
    if token:
        return token
    candidates = [data_dir] if data_dir else [Path("chunkd-data")]
    for directory in candidates:
        key = directory / "keys" / "jwt-hs256.key"
        if key.is_file():
            from chunkd.auth.permissions import ALL_ROLES
            from chunkd.auth.tokens import issue_token

            return issue_token(bytes.fromhex(key.read_text().strip()), roles=list(ALL_ROLES), lifetime=3600)
    return None


def upload(
    paths: Annotated[list[str], typer.Argument(help="FILE... TARGET: files or directories, then the target URL",
                                               metavar="FILE... TARGET")],
    protocol: Annotated[str | None, typer.Option(help="sf | print | blob | tus (default: from the URL)")] = None,
    parallel: Annotated[int, typer.Option(min=1, max=64, help="ranges in flight per file")] = 4,
    chunk_size: Annotated[str | None, typer.Option(help="bytes per request, e.g. 8M (default: per protocol)")] = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="continue an interrupted upload")] = True,
    verify: Annotated[bool, typer.Option("--verify", help="read the file back and compare sha256")] = False,
    state_dir: Annotated[Path | None, typer.Option(envvar="CHUNKD_STATE_DIR", help="where resume state lives")] = None,
    retries: Annotated[int, typer.Option(min=0, help="failed rounds in a row (without progress) before giving up")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON lines")] = False,
) -> None:
    """Upload files (directories recursively) with parallel, resumable, verified requests.

    TARGET examples: http://host:19080/ImageStore/dir/ (Service Fabric), http://host/files/ (tus),
    https://graph/v1.0/print/printers/P/jobs/J/documents/D (Graph print), a container SAS URL (blob).
    """
    from chunkd.cli._upload_run import run_upload

    raise typer.Exit(run_upload(paths, protocol, parallel, chunk_size, token, data_dir, resume, verify, state_dir,
                                retries, as_json))


@sessions_app.command("list")
def sessions_list(
    server: ServerOpt = "http://127.0.0.1:19080", token: TokenOpt = None, data_dir: DataDirOpt = None,
    family: Annotated[str | None, typer.Option(
        help="sf | print | blob | tus (as upload --protocol) or the server's family name")] = None,
    everyone: Annotated[bool, typer.Option("--all", help="every owner's sessions (Chunkd.Admin role)")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List upload sessions (your own unless --all)."""
    from chunkd.cli import _upload_run

    _upload_run.sessions_list(server, token, data_dir, family, everyone, as_json)


@sessions_app.command("show")
def sessions_show(
    session_id: str, server: ServerOpt = "http://127.0.0.1:19080", token: TokenOpt = None,
    data_dir: DataDirOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One session: its fields and a bar of received / missing byte ranges."""
    from chunkd.cli import _upload_run

    _upload_run.sessions_show(session_id, server, token, data_dir, as_json)


@sessions_app.command("delete")
def sessions_delete(
    session_ids: Annotated[list[str], typer.Argument(metavar="ID...")],
    server: ServerOpt = "http://127.0.0.1:19080", token: TokenOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Cancel sessions: staged bytes are discarded, committed files stay."""
    from chunkd.cli import _upload_run

    _upload_run.sessions_delete(session_ids, server, token, data_dir)


def register(app: typer.Typer) -> None:
    """Add ``upload`` and ``sessions`` to the main ``chunkd`` command."""
    app.command("upload")(upload)
    app.add_typer(sessions_app, name="sessions")


__all__ = ["parse_size", "register", "resolve_token"]
