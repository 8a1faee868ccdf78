"""What a user hears when an upload waits and retries: a :class:`RetryNotice` before every wait, a stopped
server failing after ``connect_retries`` (not the whole budget), the full budget once the server has answered,
and the protocols' error answers as ``code: message``."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import httpx
import pytest

from chunkd.client import CannotConnect, RetryNotice, RetryPolicy, ServerError, Uploader, UploadOptions
from chunkd.client._errtext import protocol_message, transport_reason
from tests.client.fakes import FakeImageStore, FakeTus

FAST = RetryPolicy(max_retries=6, base=0.001, cap=0.01, connect_retries=2)
SF = "http://sf.test/ImageStore/dir/f.bin"


def _uploader(transport: httpx.BaseTransport, tmp_path: Path, notices: list[RetryNotice]) -> Uploader:
    return Uploader(client=httpx.Client(transport=transport), token="t", on_retry=notices.append,
                    options=UploadOptions(parallel=2, chunk_size=64 << 10, retry=FAST, state_dir=tmp_path / "s"))


def test_a_server_that_never_answers_fails_after_connect_retries(tmp_path: Path) -> None:
    calls = itertools.count()

    def refuse(request: httpx.Request) -> httpx.Response:
        next(calls)
        raise httpx.ConnectError("[Errno 111] Connection refused")

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1000)
    notices: list[RetryNotice] = []
    with pytest.raises(CannotConnect) as info:
        _uploader(httpx.MockTransport(refuse), tmp_path, notices).upload(path, SF)
    assert next(calls) == 3  # the first try and connect_retries=2 retries, not max_retries=6
    assert [(n.attempt, n.limit, n.reason) for n in notices] == [(1, 2, "connection refused"),
                                                                (2, 2, "connection refused")]
    assert "connection refused" in str(info.value) and "gave up after 3 attempts" in str(info.value)


def test_refused_connections_mid_upload_get_the_full_budget_and_are_reported(tmp_path: Path) -> None:
    server = FakeImageStore()
    down = itertools.count()

    def fault(request: httpx.Request) -> httpx.Response | Exception | None:
        # the server "restarts" after the first chunk: four refused connections in a row, then it is back
        if request.url.path.endswith("UploadChunk") and server.body_bytes and next(down) < 4:
            return httpx.ConnectError("[Errno 111] Connection refused")
        return None

    server.fault = fault
    data = os.urandom(600 << 10)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    notices: list[RetryNotice] = []
    _uploader(server.transport(), tmp_path, notices).upload(path, SF)
    assert server.files["dir/f.bin"] == data
    assert notices and all(n.limit == FAST.max_retries for n in notices)  # not the connect budget
    assert any(n.reason == "connection refused" for n in notices)
    assert all(n.name == "f.bin" and n.delay >= 0 for n in notices)


def test_server_errors_carry_the_protocols_code_and_message(tmp_path: Path) -> None:
    server = FakeTus()

    def fault(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST":
            return httpx.Response(413, text="ERR_MAX_SIZE_EXCEEDED: upload is larger than 1024 bytes\n")
        return None

    server.fault = fault
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 2000)
    with pytest.raises(ServerError) as info:
        _uploader(server.transport(), tmp_path, []).upload(path, "http://tus.test/files/")
    assert info.value.status == 413
    assert str(info.value).endswith("ERR_MAX_SIZE_EXCEEDED: upload is larger than 1024 bytes")


@pytest.mark.parametrize(("response", "text"), [
    (httpx.Response(404, json={"error": {"code": "itemNotFound", "message": "The job does not exist."}}),
     "itemNotFound: The job does not exist."),
    (httpx.Response(400, json={"Error": {"Code": "FABRIC_E_INVALID_ARGUMENT", "Message": "bad range"}}),
     "FABRIC_E_INVALID_ARGUMENT: bad range"),
    (httpx.Response(403, headers={"x-ms-error-code": "AuthenticationFailed"},
                    text='<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>'
                         "Server failed to authenticate the request.\nRequestId:1\nTime:now</Message></Error>"),
     "AuthenticationFailed: Server failed to authenticate the request."),
    (httpx.Response(412, headers={"x-ms-error-code": "ConditionNotMet"}), "ConditionNotMet"),
    (httpx.Response(502, text="<html>\n<h1>Bad Gateway</h1></html>"), "<html>"),
    (httpx.Response(500, json={"detail": "x"}), '{"detail":"x"}'),
])
def test_protocol_message(response: httpx.Response, text: str) -> None:
    assert protocol_message(response) == text


def test_transport_reasons() -> None:
    assert transport_reason(httpx.ConnectError("[Errno 111] Connection refused")) == "connection refused"
    assert transport_reason(httpx.ReadError("[Errno 104] Connection reset by peer")) == "connection reset"
    assert transport_reason(httpx.RemoteProtocolError("Server disconnected")) == "the server closed the connection"
    assert transport_reason(httpx.ReadTimeout("")) == "timed out"
