"""The work behind ``chunkd upload`` and ``chunkd sessions`` (imported only when those commands run, so
that ``chunkd serve`` / ``chunkd token`` start without httpx, rich progress and the client)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as Bars
from rich.table import Table
from rich.text import Text

from chunkd.cli.upload import (
    EXIT_AUTH,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VERIFY,
    parse_size,
    resolve_token,
)
from chunkd.client import (
    AuthError,
    ConfigError,
    Progress,
    RetryNotice,
    RetryPolicy,
    Uploader,
    UploadError,
    UploadOptions,
    UploadResult,
    VerificationError,
    detect_protocol,
    expand,
    file_url,
)


def _bars(console: Console) -> Bars:
    return Bars(TextColumn("{task.description}", justify="left"), BarColumn(), DownloadColumn(binary_units=True),
                TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False,
                disable=not console.is_terminal)


def retry_line(notice: RetryNotice) -> str:
    """``big.iso: retrying in 2 s (3/8): connection refused``."""
    delay = f"{notice.delay:.1f}" if notice.delay < 9.95 else f"{notice.delay:.0f}"
    return f"{notice.name}: retrying in {delay} s ({notice.attempt}/{notice.limit}): {notice.reason}"


def _mbps(result: UploadResult) -> float:
    return result.sent / max(result.seconds, 1e-6) / 1e6


def run_upload(paths: list[str], protocol: str | None, parallel: int, chunk_size: str | None, token: str | None,
               data_dir: Path | None, resume: bool, verify: bool, state_dir: Path | None, retries: int,
               as_json: bool) -> int:
    console = Console(stderr=True)
    if len(paths) < 2:
        console.print("[red]give at least one FILE and a TARGET[/red]")
        return EXIT_USAGE
    *sources, target = paths
    try:
        proto = protocol or detect_protocol(target)
        jobs = list(expand([Path(p) for p in sources]))
        many = len(jobs) > 1 or any(Path(p).is_dir() for p in sources)
        urls = [file_url(proto, target, job.name, many) for job in jobs]
        options = UploadOptions(parallel=parallel, chunk_size=parse_size(chunk_size) if chunk_size else None,
                                resume=resume, verify=verify, state_dir=state_dir,
                                retry=RetryPolicy(max_retries=retries))
    except (ConfigError, typer.BadParameter) as exc:
        console.print(f"[red]{exc}[/red]")
        return EXIT_USAGE
    return _run(console, proto, jobs, urls, options, resolve_token(token, data_dir), as_json)


def _run(console: Console, proto: str, jobs: list[Any], urls: list[str], options: UploadOptions,
         token: str | None, as_json: bool) -> int:
    total = sum(job.path.stat().st_size for job in jobs)
    results: list[tuple[Any, UploadResult | None, str]] = []
    code = EXIT_OK
    began = time.monotonic()
    with _bars(console) as bars:
        overall = bars.add_task(f"[bold]{len(jobs)} file(s)", total=total)
        finished_bytes = 0
        current: dict[str, TaskID] = {}

        def on_progress(p: Progress) -> None:
            task = current.get("task")
            if task is not None:
                bars.update(task, completed=p.done, total=p.total)
            bars.update(overall, completed=finished_bytes + p.done)

        def on_retry(notice: RetryNotice) -> None:  # above the bars on a terminal, a plain stderr line otherwise
            console.print(retry_line(notice), style="yellow", markup=False, highlight=False)

        with Uploader(protocol=proto, token=token, options=options, progress=on_progress,
                      on_retry=on_retry) as uploader:
            for job, url in zip(jobs, urls, strict=True):
                current["task"] = bars.add_task(job.name, total=job.path.stat().st_size)
                try:
                    result = uploader.upload(job.path, url, name=job.name)
                    results.append((job, result, ""))
                    if not as_json:
                        note = f", resumed at {result.resumed_from}" if result.resumed_from else ""
                        console.print(f"[green]✓[/green] {job.name} ({result.size} bytes, {_mbps(result):.1f} MB/s"
                                      f"{note})")
                except KeyboardInterrupt:
                    bars.stop()
                    console.print("[yellow]interrupted; run the same command again to resume[/yellow]")
                    return EXIT_INTERRUPTED
                except UploadError as exc:
                    results.append((job, None, str(exc)))
                    console.print(Text(f"{job.name}: {exc}", style="red"))  # a Text: "[Errno 111]" is no markup
                    code = max(code, _exit_code(exc))
                finished_bytes += job.path.stat().st_size
                bars.remove_task(current.pop("task"))  # finished files leave the display; one line each stays
                bars.update(overall, completed=finished_bytes)
    _summary(console, results, time.monotonic() - began, as_json)
    return code


def _exit_code(exc: UploadError) -> int:
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, VerificationError):
        return EXIT_VERIFY
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED


def _summary(console: Console, results: list[tuple[Any, UploadResult | None, str]], seconds: float,
             as_json: bool) -> None:
    if as_json:
        for job, r, error in results:
            row: dict[str, Any] = {"file": str(job.path), "name": job.name, "ok": r is not None, "error": error}
            if r is not None:
                row.update(location=r.location, size=r.size, sha256=r.sha256, sent=r.sent,
                           resumed_from=r.resumed_from, verified=r.verified, seconds=round(r.seconds, 3),
                           mb_per_s=round(_mbps(r), 2))
            typer.echo(json.dumps(row))
        return
    table = Table(title=None, show_edge=False)
    for col in ("file", "size", "sent", "MB/s", "sha256", "result"):
        table.add_column(col, justify="right" if col in ("size", "sent", "MB/s") else "left")
    ok = 0
    for job, r, error in results:
        if r is None:
            table.add_row(job.name, str(job.path.stat().st_size), "-", "-", "-", Text(error[:60], style="red"))
            continue
        ok += 1
        note = "verified" if r.verified else ("resumed" if r.resumed_from else "ok")
        table.add_row(job.name, str(r.size), str(r.sent), f"{_mbps(r):.1f}", r.sha256[:16], Text(note, style="green"))
    console.print(table)
    console.print(f"{ok}/{len(results)} uploaded in {seconds:.1f}s")


# -- sessions ---------------------------------------------------------------------------------------
# ``upload --protocol`` names -> the family names the server stores; either form works for ``--family``
FAMILY_NAMES = {"sf": "servicefabric", "print": "graph-print", "blob": "blobblock", "tus": "tus"}

def range_bar(length: int, received: list[tuple[int, int]], width: int = 60) -> Text:
    """One character per ``length/width`` bytes: full block = received, shade = partly, dot = missing."""
    bar = Text()
    if length <= 0:
        return Text("█" * width, style="green")
    for i in range(width):
        a, b = length * i // width, max(length * (i + 1) // width, length * i // width + 1)
        got = sum(max(0, min(e, b) - max(s, a)) for s, e in received)
        if got >= b - a:
            bar.append("█", style="green")
        elif got:
            bar.append("▒", style="yellow")
        else:
            bar.append("·", style="red")
    return bar


def _client(server: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=30.0)


def _get(server: str, token: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
    console = Console(stderr=True)
    try:
        with _client(server, token) as client:
            r = client.request(method, path, **kw)
    except httpx.TransportError as exc:
        console.print(f"[red]cannot reach {server}: {exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    if r.status_code >= 400:
        try:
            err = r.json()["error"]
            message = f"{err['code']}: {err['message']}"
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        console.print(f"HTTP {r.status_code} {message}", style="red", markup=False)
        raise typer.Exit(EXIT_AUTH if r.status_code in (401, 403) else EXIT_FAILED)
    return r


def file_name(session: dict[str, Any]) -> str:
    """What the user calls the upload: its name (tus ``filename``, Graph ``documentName``) or, for families whose
    sessions are keyed by the file's path (Service Fabric, Blob), that key."""
    return str(session.get("name") or ("" if session.get("family") in ("tus", "graph-print") else session["key"]))


def sessions_list(server: str, token: str | None, data_dir: Path | None, family: str | None, everyone: bool,
                  as_json: bool) -> None:
    params: dict[str, str] = {"limit": "1000"}
    if family:
        params["family"] = FAMILY_NAMES.get(family, family)
    if everyone:
        params["all"] = "true"
    sessions = _get(server, resolve_token(token, data_dir), "GET", "/chunkd/v1/sessions", params=params).json()
    if as_json:
        typer.echo(json.dumps(sessions["sessions"]))
        return
    table = Table(show_edge=False)
    for col in ("id", "name", "family", "state", "received", "length", "key", "expires"):
        table.add_column(col)
    for s in sessions["sessions"]:
        length = s["length"]
        table.add_row(s["id"], file_name(s), s["family"], s["state"], str(s["received"]),
                      "?" if length is None else str(length),
                      s["key"], s["expiresAt"])
    Console().print(table)


def sessions_show(session_id: str, server: str, token: str | None, data_dir: Path | None, as_json: bool) -> None:
    s = _get(server, resolve_token(token, data_dir), "GET", f"/chunkd/v1/sessions/{session_id}").json()
    if as_json:
        typer.echo(json.dumps(s))
        return
    console = Console()
    for name in ("id", "name", "family", "state", "owner", "namespace", "key", "length", "received", "createdAt",
                 "modifiedAt", "expiresAt"):
        value = file_name(s) if name == "name" else s.get(name)  # a Text: a file name is never read as markup
        console.print(Text.assemble((f"{name:>10}", "bold"), f"  {value}"))
    length = s.get("length") or 0
    received = [(a, b) for a, b in s.get("receivedRanges", [])]
    width = max(20, min(100, console.width - 14))
    console.print(Text(f"{'ranges':>10}  ") + range_bar(length, received, width))
    missing = s.get("missingRanges", [])
    shown = ", ".join(f"{a}-{b - 1}" for a, b in missing[:8]) + (" …" if len(missing) > 8 else "")
    console.print(f"[bold]{'missing':>10}[/bold]  {shown or 'nothing'}")
    transfer = s.get("transfer") or {}
    if transfer:
        console.print(f"[bold]{'transfer':>10}[/bold]  {transfer.get('writes', 0)} writes, "
                      f"{transfer.get('body_bytes', 0)} body bytes, {transfer.get('new_bytes', 0)} new, "
                      f"{transfer.get('duplicate_writes', 0)} duplicates (this server process)")


def sessions_delete(session_ids: list[str], server: str, token: str | None, data_dir: Path | None) -> None:
    tok = resolve_token(token, data_dir)
    for sid in session_ids:
        _get(server, tok, "DELETE", f"/chunkd/v1/sessions/{sid}")
        typer.echo(f"deleted {sid}")
