"""The current createUploadSession form over plain HTTP: uploadUrl with its own credential, status, cancel."""

from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import httpx

from tests.protocols.print.conftest import ALICE, PrintEnv, graph_error

C = "PrintJob.Create"


def _create(env: PrintEnv, doc: str, headers: dict[str, str], size: int) -> dict[str, object]:
    r = env.client.post(doc + "/createUploadSession", headers=headers, json={"properties": {
        "documentName": "r.pdf", "contentType": "application/pdf", "size": size}})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _with_token(url: str, token: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(query=urlencode({"tempauthtoken": token})))


def test_upload_url_round_trip(env: PrintEnv) -> None:
    alice = env.user(ALICE, C)  # the least privilege that may upload
    job, did, doc = env.new_job(alice)
    s = _create(env, doc, alice, 1000)
    url = str(s["uploadUrl"])
    assert s["nextExpectedRanges"] == ["0-999"] and str(s["expirationDateTime"]).endswith("Z")
    assert "tempauthtoken=" in url
    # the same principal asking again gets the same session
    assert urlparse(str(_create(env, doc, alice, 1000)["uploadUrl"])).path == urlparse(url).path

    data = os.urandom(1000)
    r = httpx.put(url, content=data[400:600], headers={"Content-Range": "bytes=400-599/1000"})  # '=' form
    assert r.status_code == 202 and r.json()["nextExpectedRanges"] == ["0-399", "600-999"], r.text
    assert r.json()["expirationDateTime"] == s["expirationDateTime"]
    # an Authorization header on the uploadUrl is ignored, not refused
    r = httpx.put(url, content=data[0:500], headers={"Content-Range": "bytes 0-499/1000",
                                                     "Authorization": "Bearer not-a-token"})
    assert r.status_code == 202 and r.json()["nextExpectedRanges"] == ["600-999"]  # overlap accepted
    status = httpx.get(url)
    assert status.status_code == 200 and status.json()["nextExpectedRanges"] == ["600-999"]
    # the document cannot be fetched or started before it is complete
    graph_error(env.client.get(doc + "/$value", headers=env.user(ALICE, "PrintJob.Read")), 404, "itemNotFound")
    graph_error(env.client.post(f"{env.jobs_url()}/{job}/start", headers=alice), 409, "conflict")

    done = httpx.put(url, content=data[600:], headers={"Content-Range": "bytes 600-999/1000"})
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["id"] == did and body["size"] == 1000 and body["contentType"] == "application/pdf"
    # LargeFileUploadTask re-sends the final range after the 201: same answer, no error
    again = httpx.put(url, content=data[600:], headers={"Content-Range": "bytes 600-999/1000"})
    assert again.status_code == 201 and again.json()["id"] == did
    assert httpx.get(url).json()["nextExpectedRanges"] == []
    # but bytes that differ in range from what was received are still checked against the size
    graph_error(httpx.put(url, content=b"z", headers={"Content-Range": "bytes 1000-1000/1000"}), 416,
                "invalidRange")
    graph_error(httpx.delete(url), 409, "conflict")  # an uploaded document cannot be cancelled
    reader = env.user(ALICE, "PrintJob.Read")
    assert env.client.get(doc + "/$value", headers=reader).content == data
    head = env.client.head(doc + "/$value", headers=reader)
    assert head.status_code == 200 and head.headers["content-length"] == "1000" and head.content == b""
    assert env.client.post(f"{env.jobs_url()}/{job}/start", headers=alice).status_code == 200


def test_parallel_out_of_order_segments(env: PrintEnv) -> None:
    alice = env.user(ALICE, C)
    _, _, doc = env.new_job(alice)
    data = os.urandom(2 << 20)
    url = str(_create(env, doc, alice, len(data))["uploadUrl"])
    step = 128 * 1024
    pieces = [(s, min(s + step, len(data))) for s in range(0, len(data), step)]
    random.Random(5).shuffle(pieces)

    def send(p: tuple[int, int]) -> int:
        r = httpx.put(url, content=data[p[0]:p[1]], headers={"Content-Range": f"bytes {p[0]}-{p[1] - 1}/{len(data)}"},
                      timeout=60)
        return r.status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(send, pieces))
    assert 201 in statuses and set(statuses) <= {201, 202}, statuses
    got = env.client.get(doc + "/$value", headers=env.user(ALICE, "PrintJob.Read")).content
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_tampered_upload_urls_are_refused(env: PrintEnv) -> None:
    alice = env.user(ALICE, C)
    _, _, doc = env.new_job(alice)
    url = str(_create(env, doc, alice, 10)["uploadUrl"])
    token = parse_qs(urlparse(url).query)["tempauthtoken"][0]
    exp, mac = token.split(".")
    other_session = str(_create(env, env.new_job(alice)[2], alice, 10)["uploadUrl"])
    forged = [
        _with_token(url, f"{exp}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"),  # signature changed
        _with_token(url, f"{int(exp) + 3600}.{mac}"),  # expiry extended
        _with_token(url, ""),  # no token
        url.split("?")[0],  # no query at all
        _with_token(other_session, token),  # another session's token
    ]
    for bad in forged:
        graph_error(httpx.put(bad, content=b"0123456789", headers={"Content-Range": "bytes 0-9/10"}), 401,
                    "InvalidAuthenticationToken")
        graph_error(httpx.get(bad), 401, "InvalidAuthenticationToken")
        graph_error(httpx.delete(bad), 401, "InvalidAuthenticationToken")
    assert httpx.get(url).json()["nextExpectedRanges"] == ["0-9"]  # still intact


def test_delete_cancels_and_frees_the_document(env: PrintEnv) -> None:
    alice = env.user(ALICE, C)
    _, _, doc = env.new_job(alice)
    url = str(_create(env, doc, alice, 10)["uploadUrl"])
    assert httpx.put(url, content=b"01234", headers={"Content-Range": "bytes 0-4/10"}).status_code == 202
    graph_error(httpx.post(url, content=b"56789", headers={"Content-Range": "bytes 5-9/10"}), 405, "invalidRequest")
    assert httpx.delete(url).status_code == 204
    graph_error(httpx.get(url), 404, "itemNotFound")
    graph_error(httpx.put(url, content=b"56789", headers={"Content-Range": "bytes 5-9/10"}), 404, "itemNotFound")
    assert _create(env, doc, alice, 10)["nextExpectedRanges"] == ["0-9"]


def test_empty_document_completes_at_once(env: PrintEnv) -> None:
    alice = env.user(ALICE, "PrintJob.ReadWrite")
    job, _, doc = env.new_job(alice)
    s = _create(env, doc, alice, 0)
    assert s["nextExpectedRanges"] == []
    r = env.client.get(doc + "/$value", headers=alice)
    assert r.status_code == 200 and r.content == b""
    assert env.client.post(f"{env.jobs_url()}/{job}/start", headers=alice).status_code == 200


def test_next_expected_ranges_lists_the_first_gaps_only(env: PrintEnv) -> None:
    from chunkd.protocols.graph_print import NEXT_EXPECTED_RANGES

    alice = env.user(ALICE, C)
    _, _, doc = env.new_job(alice)
    n = NEXT_EXPECTED_RANGES + 5  # every other byte received: n + 1 gaps
    size = 2 * n + 1
    url = str(_create(env, doc, alice, size)["uploadUrl"])
    with httpx.Client() as http:
        for i in range(n):
            r = http.put(url, content=b"x", headers={"Content-Range": f"bytes {2 * i + 1}-{2 * i + 1}/{size}"})
            assert r.status_code == 202, r.text
        listed = http.get(url).json()["nextExpectedRanges"]
    assert listed == [f"{2 * i}-{2 * i}" for i in range(NEXT_EXPECTED_RANGES)]  # in order, from the start
