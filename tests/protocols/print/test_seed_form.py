"""The seeds' printUploadSession form (seeds 001, 004) over plain HTTP against a real server."""

from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.protocols.print.conftest import ALICE, BOB, PrintEnv, graph_error

RW = "PrintJob.ReadWrite"


def test_put_get_delete_session(env: PrintEnv) -> None:
    alice = env.user(ALICE, RW)
    _, _, doc = env.new_job(alice)
    r = env.open_seed_session(doc, alice, 1024)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["size"] == 1024 and s["contentType"] == "application/pdf" and s["documentName"] == "f.pdf"
    assert s["nextExpectedRanges"] == s["missingRanges"] == [{"start": 0, "end": 1023}]
    assert s["expiryDateTime"] == s["expirationDateTime"] and s["expiryDateTime"].endswith("Z")
    assert s["createdBy"] == {"application": {"id": "app-1"}, "user": {"id": ALICE}}
    assert r.headers["etag"] == f'"{s["id"]}"' and r.headers["request-id"]

    got = env.client.get(doc + "/uploadSession", headers=alice)
    assert got.status_code == 200 and got.json()["id"] == s["id"] and got.headers["etag"] == r.headers["etag"]

    # the same principal creating again gets its active session back
    again = env.open_seed_session(doc, alice, 1024)
    assert again.status_code == 200 and again.json()["id"] == s["id"]

    # a segment: 202 with the session, then DELETE (creator only) cancels it
    seg = env.client.post(doc + "/uploadSession/$value", content=b"x" * 24,
                          headers={**alice, "Content-Range": "bytes 1000-1023/1024", "If-Match": r.headers["etag"]})
    assert seg.status_code == 202, seg.text
    assert seg.json()["nextExpectedRanges"] == [{"start": 0, "end": 999}]
    assert env.client.delete(doc + "/uploadSession", headers=alice).status_code == 204
    graph_error(env.client.get(doc + "/uploadSession", headers=alice), 404, "itemNotFound")
    # a new session may be opened afterwards, with a new id and nothing received
    fresh = env.open_seed_session(doc, alice, 1024).json()
    assert fresh["id"] != s["id"] and fresh["missingRanges"] == [{"start": 0, "end": 1023}]


def test_segments_out_of_order_from_4_threads_then_value_and_start(env: PrintEnv) -> None:
    alice = env.user(ALICE, RW)
    job, _, doc = env.new_job(alice)
    data = os.urandom(3 << 20)
    step = 96 * 1024 + 7  # not a multiple of anything in particular
    pieces = [(s, min(s + step, len(data))) for s in range(0, len(data), step)]
    random.Random(3).shuffle(pieces)
    created = env.open_seed_session(doc, alice, len(data))
    etag = created.headers["etag"]

    def send(piece: tuple[int, int]) -> int:
        s, e = piece
        with httpx.Client(base_url=env.server.url, timeout=60) as c:
            r = c.post(doc + "/uploadSession/$value", content=data[s:e], headers={
                **alice, "Content-Range": f"bytes {s}-{e - 1}/{len(data)}", "If-Match": etag,
                "Content-Type": "application/octet-stream"})
            assert r.status_code in (201, 202), r.text
            return r.status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(send, pieces))
    assert 201 in statuses and set(statuses) <= {201, 202}
    final = env.client.get(doc + "/uploadSession", headers=alice).json()
    assert final["nextExpectedRanges"] == []
    # a segment already received is a no-op success, also after completion
    s, e = pieces[0]
    dup = env.client.post(doc + "/uploadSession/$value", content=data[s:e],
                          headers={**alice, "Content-Range": f"bytes {s}-{e - 1}/{len(data)}"})
    assert dup.status_code == 201, dup.text

    body = env.client.get(doc + "/$value", headers=alice)
    assert body.status_code == 200 and hashlib.sha256(body.content).digest() == hashlib.sha256(data).digest()
    meta = env.client.get(doc, headers=alice).json()
    assert meta["size"] == len(data) and meta["displayName"] == "f.pdf" and meta["uploadedDateTime"]
    started = env.client.post(f"{env.jobs_url()}/{job}/start", headers=alice)
    assert started.status_code == 200 and started.json()["state"] == "completed", started.text
    # the job is done: no new session for its document
    graph_error(env.open_seed_session(doc, alice, 10), 409, "conflict")


def test_second_principal_gets_409_while_a_session_is_active(env: PrintEnv) -> None:
    owner = env.user(ALICE, "PrintJob.ReadWrite.All")
    other = env.user(BOB, "PrintJob.ReadWrite.All")
    _, _, doc = env.new_job(owner)
    first = env.open_seed_session(doc, owner, 100)
    assert first.status_code == 200
    err = graph_error(env.open_seed_session(doc, other, 100), 409, "conflict")
    assert err["innerError"]["code"] == "uploadSessionInProgress"
    # nor through the current form, nor by writing into the owner's session
    graph_error(env.client.post(doc + "/createUploadSession", headers=other, json={"properties": {
        "documentName": "b.pdf", "contentType": "application/pdf", "size": 100}}), 409, "conflict")
    graph_error(env.client.post(doc + "/uploadSession/$value", content=b"x" * 10,
                                headers={**other, "Content-Range": "bytes 0-9/100"}), 409, "conflict")
    graph_error(env.client.delete(doc + "/uploadSession", headers=other), 403, "accessDenied")
    # the owner's session is untouched and can be re-opened with other properties only after DELETE
    assert env.client.get(doc + "/uploadSession", headers=owner).json()["missingRanges"] == [{"start": 0, "end": 99}]
    graph_error(env.open_seed_session(doc, owner, 200), 409, "conflict")
    assert env.client.delete(doc + "/uploadSession", headers=owner).status_code == 204
    assert env.open_seed_session(doc, other, 100).status_code == 200


def test_if_match_is_checked_when_sent(env: PrintEnv) -> None:
    alice = env.user(ALICE, RW)
    _, _, doc = env.new_job(alice)
    s = env.open_seed_session(doc, alice, 20).json()
    url = doc + "/uploadSession/$value"
    for good in (s["id"], f'"{s["id"]}"', f'W/"{s["id"]}"', "*"):
        r = env.client.post(url, content=b"a" * 5, headers={**alice, "Content-Range": "bytes 0-4/20",
                                                              "If-Match": good})
        assert r.status_code == 202, (good, r.text)
    graph_error(env.client.post(url, content=b"b" * 5, headers={**alice, "Content-Range": "bytes 5-9/20",
                                                                  "If-Match": '"other"'}), 412, "resourceModified")
    graph_error(env.client.delete(doc + "/uploadSession", headers={**alice, "If-Match": '"other"'}),
                412, "resourceModified")
    assert env.client.get(doc + "/uploadSession", headers=alice).json()["missingRanges"] == [{"start": 5, "end": 19}]


def test_shares_alias_and_beta_reach_the_same_objects(env: PrintEnv) -> None:
    alice = env.user(ALICE, RW)
    job, did, doc = env.new_job(alice)
    env.upload_all(doc, alice, b"hello print")
    for version in ("v1.0", "beta"):
        for coll in ("shares", "printerShares"):
            r = env.client.get(f"/{version}/print/{coll}/{env.printer}/jobs/{job}/documents/{did}/$value",
                               headers=alice)
            assert r.status_code == 200 and r.content == b"hello print", r.text
    listing = env.client.get("/v1.0/print/shares", headers=alice).json()["value"]
    assert env.printer in [p["id"] for p in listing]
