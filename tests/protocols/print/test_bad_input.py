"""Bad input gets the exact Graph error and changes nothing (issue 3's bad-input table)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.protocols.print.conftest import ALICE, MAX_SIZE, PrintEnv, graph_error, start

RW = "PrintJob.ReadWrite"
OK = {"size": 100, "contentType": "application/pdf", "documentName": "a.pdf"}

CREATE_CASES: list[tuple[str, Any, int, str]] = [
    ("missing size", {"contentType": "application/pdf", "documentName": "a.pdf"}, 400, "invalidRequest"),
    ("negative size", {**OK, "size": -1}, 400, "invalidRequest"),
    ("size not a number", {**OK, "size": "lots"}, 400, "invalidRequest"),
    ("size a boolean", {**OK, "size": True}, 400, "invalidRequest"),
    ("size a fraction", {**OK, "size": 10.5}, 400, "invalidRequest"),
    ("size over the maximum", {**OK, "size": MAX_SIZE + 1}, 400, "invalidRequest"),
    ("unknown content type", {**OK, "contentType": "application/x-unknown"}, 400, "invalidRequest"),
    ("missing content type", {"size": 100, "documentName": "a.pdf"}, 400, "invalidRequest"),
    ("document name not a string", {**OK, "documentName": 7}, 400, "invalidRequest"),
    ("size a superscript digit", {**OK, "size": "\u00b2"}, 400, "invalidRequest"),  # "²".isdigit(), int() refuses
    ("size an Arabic-Indic digit string", {**OK, "size": "\u0663"}, 400, "invalidRequest"),
    ("size a 5000-digit string", {**OK, "size": "9" * 5000}, 400, "invalidRequest"),
]


@pytest.mark.parametrize("name,body,status,code", CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
def test_session_create_rejects(env: PrintEnv, name: str, body: Any, status: int, code: str) -> None:
    alice = env.user(ALICE, RW)
    _, _, doc = env.new_job(alice)
    graph_error(env.client.put(doc + "/uploadSession", json=body, headers=alice), status, code)
    graph_error(env.client.post(doc + "/createUploadSession", json={"properties": body}, headers=alice),
                status, code)
    graph_error(env.client.get(doc + "/uploadSession", headers=alice), 404, "itemNotFound")  # nothing created
    assert env.client.get(doc, headers=alice).json()["size"] == 0


def test_malformed_bodies(env: PrintEnv) -> None:
    alice = env.user(ALICE, RW)
    _, _, doc = env.new_job(alice)
    for content in (b"{not json", b"[1, 2]", b'"text"'):
        graph_error(env.client.put(doc + "/uploadSession", content=content, headers=alice), 400, "invalidRequest")
    graph_error(env.client.post(doc + "/createUploadSession", json={"size": 5}, headers=alice), 400, "invalidRequest")
    graph_error(env.client.post(env.jobs_url(), json={"configuration": 5}, headers=alice), 400, "invalidRequest")
    # RecursionError and the 4,300-digit int() limit are not ValueErrors a JSON parser is expected to raise
    nested = b"[" * 100_000 + b"]" * 100_000
    too_deep = b'{"configuration": ' + b'{"a": ' * 70 + b"1" + b"}" * 70 + b"}"
    huge_int = b'{"size": ' + b"9" * 5000 + b', "contentType": "application/pdf"}'
    nan = b'{"size": NaN, "contentType": "application/pdf"}'
    for content in (nested, huge_int, nan):
        graph_error(env.client.put(doc + "/uploadSession", content=content, headers=alice), 400, "invalidRequest")
        graph_error(env.client.post(doc + "/createUploadSession", content=b'{"properties": ' + content + b"}",
                                    headers=alice), 400, "invalidRequest")
    for content in (nested, too_deep):
        graph_error(env.client.post(env.jobs_url(), content=content, headers=alice), 400, "invalidRequest")
    graph_error(env.client.get(doc + "/uploadSession", headers=alice), 404, "itemNotFound")  # nothing created


def _chunked(data: bytes) -> Iterator[bytes]:
    """A body without Content-Length: only the server can count it."""
    for i in range(0, len(data), 64 << 10):
        yield data[i:i + (64 << 10)]


def test_oversized_json_bodies_are_413_and_change_nothing(env: PrintEnv) -> None:
    alice = env.user(ALICE, RW)
    _, _, doc = env.new_job(alice)
    big = b'{"properties": ' + json.dumps({**OK, "pad": "x" * (2 << 20)}).encode() + b"}"
    for body in (lambda: big, lambda: _chunked(big)):  # with and without Content-Length
        graph_error(env.client.post(doc + "/createUploadSession", content=body(), headers=alice), 413,
                    "invalidRequest")
    graph_error(env.client.put(doc + "/uploadSession", content=_chunked(big[15:-1]), headers=alice), 413,
                "invalidRequest")
    graph_error(env.client.post(env.jobs_url(), content=b'{"configuration": {"x": "' + b"y" * (2 << 20) + b'"}}',
                                headers=alice), 413, "invalidRequest")
    graph_error(env.client.get(doc + "/uploadSession", headers=alice), 404, "itemNotFound")
    # just under the cap is still a JSON body like any other
    fits = json.dumps({"properties": {**OK, "pad": "x" * ((1 << 20) - 200)}}).encode()
    assert env.client.post(doc + "/createUploadSession", content=fits, headers=alice).status_code == 200


def test_download_ranges(env: PrintEnv) -> None:
    alice = env.user(ALICE, RW)
    _, _, doc = env.new_job(alice)
    env.upload_all(doc, alice, b"0123456789")
    reader = env.user(ALICE, "PrintJob.Read")
    assert env.client.get(doc + "/$value", headers={**reader, "Range": "bytes=2-4"}).content == b"234"
    for rng in (f"bytes={'9' * 5000}-", f"bytes=0-{'9' * 5000}", f"bytes=-{'9' * 5000}"):
        graph_error(env.client.get(doc + "/$value", headers={**reader, "Range": rng}), 400, "invalidRequest")
    r = env.client.get(doc + "/$value", headers={**reader, "Range": "bytes=10-"})
    graph_error(r, 416, "invalidRange")  # was an empty body
    assert r.headers["content-range"] == "bytes */10"


def test_upload_url_token_with_a_non_ascii_digit(env: PrintEnv, seeded: tuple[dict[str, str], str, str]) -> None:
    _, _, url = seeded
    base = url.split("?", 1)[0]
    for token in ("\u00b2.abc", "\u0663" * 5 + ".abc", "9" * 5000 + ".abc"):
        graph_error(httpx.put(base, params={"tempauthtoken": token}, content=b"1" * 10,
                              headers={"Content-Range": "bytes 10-19/100"}), 401, "InvalidAuthenticationToken")


SEGMENT_CASES: list[tuple[str, str | None, bytes, int, str]] = [
    ("no Content-Range", None, b"x" * 10, 400, "invalidRequest"),
    ("no total", "bytes 10-19", b"x" * 10, 400, "invalidRequest"),
    ("wrong unit", "items 10-19/100", b"x" * 10, 400, "invalidRequest"),
    ("unknown total", "bytes 10-19/*", b"x" * 10, 400, "invalidRequest"),
    ("total differs from size", "bytes 10-19/99", b"x" * 10, 400, "invalidRequest"),
    ("end beyond the size", "bytes 95-100/100", b"x" * 6, 416, "invalidRange"),
    ("start beyond the size", "bytes 100-109/100", b"x" * 10, 416, "invalidRange"),
    ("start after end", "bytes 19-10/100", b"x" * 10, 400, "invalidRequest"),
    ("body shorter than the range", "bytes 10-19/100", b"x" * 5, 400, "invalidRequest"),
    ("body longer than the range", "bytes 10-19/100", b"x" * 15, 400, "invalidRequest"),
]


@pytest.fixture
def seeded(env: PrintEnv) -> Iterator[tuple[dict[str, str], str, str]]:
    """A job whose document has a 100-byte session with bytes 0-9 received: (headers, doc URL, uploadUrl)."""
    alice = env.user(ALICE, RW)
    _, _, doc = env.new_job(alice)
    r = env.client.post(doc + "/createUploadSession", json={"properties": OK}, headers=alice)
    url = r.json()["uploadUrl"]
    assert httpx.put(url, content=b"0" * 10, headers={"Content-Range": "bytes 0-9/100"}).status_code == 202
    yield alice, doc, url
    assert httpx.get(url).json()["nextExpectedRanges"] == ["10-99"]  # nothing changed


@pytest.mark.parametrize("name,crange,body,status,code", SEGMENT_CASES, ids=[c[0] for c in SEGMENT_CASES])
def test_segment_rejects(env: PrintEnv, seeded: tuple[dict[str, str], str, str], name: str, crange: str | None,
                         body: bytes, status: int, code: str) -> None:
    alice, doc, url = seeded
    headers = {"Content-Range": crange} if crange else {}
    graph_error(httpx.put(url, content=body, headers=headers), status, code)
    graph_error(env.client.post(doc + "/uploadSession/$value", content=body, headers={**alice, **headers}),
                status, code)


def test_wrong_if_match_changes_nothing(env: PrintEnv, seeded: tuple[dict[str, str], str, str]) -> None:
    alice, doc, _ = seeded
    graph_error(env.client.post(doc + "/uploadSession/$value", content=b"y" * 10, headers={
        **alice, "Content-Range": "bytes 10-19/100", "If-Match": '"d10b32d8-30ed-4c72-a69b-a7155f81947d"'}),
        412, "resourceModified")


def test_expired_session(tmp_path: Path) -> None:
    env = start(tmp_path, {"CHUNKD_SESSION_TTL": "2"})
    try:
        alice = env.user(ALICE, RW)
        _, _, doc = env.new_job(alice)
        url = env.client.post(doc + "/createUploadSession", json={"properties": OK}, headers=alice).json()["uploadUrl"]
        assert httpx.put(url, content=b"0" * 10, headers={"Content-Range": "bytes 0-9/100"}).status_code == 202
        _, _, doc2 = env.new_job(alice)
        assert env.open_seed_session(doc2, alice, 100).status_code == 200
        time.sleep(3.2)
        graph_error(httpx.put(url, content=b"1" * 10, headers={"Content-Range": "bytes 10-19/100"}), 404,
                    "itemNotFound")
        graph_error(httpx.get(url), 404, "itemNotFound")
        graph_error(env.client.post(doc2 + "/uploadSession/$value", content=b"1" * 10,
                                    headers={**alice, "Content-Range": "bytes 10-19/100"}), 404, "itemNotFound")
        graph_error(env.client.get(doc2 + "/uploadSession", headers=alice), 404, "itemNotFound")
        # the document is free again: a new session starts from nothing
        fresh = env.client.post(doc + "/createUploadSession", json={"properties": OK}, headers=alice).json()
        assert fresh["nextExpectedRanges"] == ["0-99"] and fresh["uploadUrl"] != url
    finally:
        env.client.close()
        env.server.stop()
