"""No credential reaches a log line: webhook failures of a real ``chunkd serve``, and every logger's records."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest

from chunkd.server.logs import JsonFormatter, TextFormatter, log_config
from chunkd.server.redact import redact_text, redact_url
from tests.serverproc import free_port

SAS = "https://acct.blob.core.windows.net/c/b?comp=block&blockid=QUJD&sv=2021-08-06&sig=SECRETSIG%2B%3D&se=2030"
GRAPH = "http://127.0.0.1:19080/print-upload/abc?tempauthtoken=SECRETTEMP"


def _wait_for(server, needles: tuple[str, ...]) -> str:
    deadline = time.monotonic() + 15
    while not all(n in server.log() for n in needles) and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.log()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_failed_webhook_is_logged_without_its_credentials(serve, fmt: str) -> None:
    # nothing listens on the port: each delivery fails at once, and retries 0 gives up on the first attempt
    port = free_port()
    hook = f"http://hookuser:SECRETPASS@127.0.0.1:{port}/hook?token=SECRETTOKEN&tenant=t1"
    # trace: uvicorn then logs every ASGI scope, query string included
    server = serve("--webhook-urls", hook, "--webhook-retries", "0", "--webhook-events", "*", "--log-format", fmt,
                   "--log-level", "trace")
    httpx.put(f"{server.url}/print-upload/abc?tempauthtoken=SECRETTEMP&sig=SECRETSIG", content=b"x",
              headers={"Content-Range": "bytes 0-0/1", "Authorization": "Basic SECRETBASIC"})
    made = httpx.post(f"{server.url}/files/", content=b"hello",
                      headers={"Authorization": f"Bearer {server.token()}", "Tus-Resumable": "1.0.0",
                               "Upload-Length": "5", "Content-Type": "application/offset+octet-stream"})
    assert made.status_code == 201, made.text
    sid = made.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    # "created" goes through the outbox (abandoned), "progress" is posted in-process (failed)
    log = _wait_for(server, (f"for created {sid} abandoned after 1 attempts", f"for progress {sid} failed after"))
    assert "SECRET" not in log and "hookuser" not in log, log
    assert "tempauthtoken=REDACTED" in log  # the trace line of that request
    shown = f"http://REDACTED@127.0.0.1:{port}"
    if fmt == "json":
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        warnings = [e for e in lines if e["logger"] == "chunkd.webhooks"]
        assert warnings and all(e["level"] == "warning" for e in warnings), log
        messages = [str(e["message"]) for e in warnings]
    else:
        messages = [line.split(": ", 1)[1] for line in log.splitlines() if " WARNING chunkd.webhooks: " in line]
    created = next(m for m in messages if f"for created {sid} abandoned" in m)
    assert f"{shown}/hook?token=REDACTED&tenant=t1: ConnectError" in created, created
    progress = next(m for m in messages if f"for progress {sid} failed" in m)
    assert progress.startswith(f"webhook {shown}/hook?token=REDACTED&tenant=t1 for progress {sid} "), progress


def _record(name: str, message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, exc_info)


def test_every_loggers_lines_are_redacted_in_both_formats() -> None:
    try:
        raise RuntimeError(f"PUT {SAS} failed; headers {{'Authorization': 'Bearer SECRETBEARER'}}")
    except RuntimeError as caught:
        exc = caught
    records = [_record("azure.core.pipeline", "request %s failed", SAS, exc=exc),
               _record("chunkd.engine", "uploading to %s", GRAPH),
               _record("httpx", "POST https://u:SECRETPW@h.example/x?code=SECRETCODE&a=1")]
    for formatter in (TextFormatter(), JsonFormatter()):
        out = "\n".join(formatter.format(r) for r in records)
        assert "SECRET" not in out, out
        assert "sig=REDACTED&se=2030" in out and "tempauthtoken=REDACTED" in out and "comp=block" in out
        assert "https://REDACTED@h.example/x?code=REDACTED&a=1" in out
    # the access log redacts its own request target: its free text is left alone (its lines are many)
    assert "SECRETTEMP" in TextFormatter().format(_record("chunkd.access", "%s", GRAPH))


def test_other_libraries_warnings_go_through_chunkds_handler() -> None:
    config = log_config("info", "json", access_log=False)
    assert config["root"] == {"handlers": ["stderr"], "level": logging.WARNING}
    assert config["handlers"]["stderr"]["stream"] == "ext://sys.stderr"


def test_redact_url_and_text() -> None:
    assert redact_url("https://u:p@h:8/p?token=t&x=1#f") == "https://REDACTED@h:8/p?token=REDACTED&x=1#f"
    assert redact_url("http://h/hook") == "http://h/hook"
    assert redact_text("postgresql://chunkd:pw@db/x failed") == "postgresql://REDACTED@db/x failed"
    assert redact_text("Authorization: Basic dXNlcjpwdw== sent") == "Authorization: REDACTED sent"
    assert redact_text("got eyJhbGciOiJIUzI1NiJ9.e30.c2ln back") == "got REDACTED back"
    assert redact_text("Bearer abc.def") == "Bearer REDACTED"
    assert redact_text("query_string': b'tempauthtoken=t&sig=s'") == \
        "query_string': b'tempauthtoken=REDACTED&sig=REDACTED'"
    assert redact_text("retry with token=abc (key=k1 b=2)") == "retry with token=REDACTED (key=REDACTED b=2)"
    plain = "expired tus session 1f: tus/1f, 3 of 5 bytes received; a basic check; ?blockid=QUJD&a=b in=0 out=5"
    assert redact_text(plain) == plain
