"""Per-version conformance, built from the draft's own examples (draft-ietf-httpbis-resumable-upload -01 to -11,
interop versions 3 to 8), each run in every version against a real server: what differs between versions is
asserted from the version's row of expectations below, never skipped."""

from __future__ import annotations

import base64
import hashlib
import os

import httpx
import pytest

from tests.protocols.ietf.conftest import MAX_SIZE, PARTIAL, PROBLEM, Draft

CONTENT = os.urandom(100)  # the examples' 100 bytes


def problem(r: httpx.Response, draft: Draft, kind: str) -> None:
    """From interop 6 (7 for inconsistent-upload-length) the error is the draft's problem type; plain text before."""
    defined = {"mismatching-upload-offset": 6, "completed-upload": 6, "inconsistent-upload-length": 7}[kind]
    if draft.version >= defined:
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == PROBLEM + kind
    else:
        assert r.headers["content-type"].startswith("text/plain")


def test_complete_upload_in_one_request(draft: Draft) -> None:
    r = draft.create(CONTENT, complete=True, content_type="image/png",
                     content_disposition='attachment; filename="a.png"')
    assert r.status_code == 201
    assert r.headers["upload-offset"] == "100"
    assert r.headers[draft.field] == draft.flag(True)
    assert r.headers["upload-draft-interop-version"] == str(draft.version)
    got = draft.client.get(r.headers["location"])
    assert got.content == CONTENT
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"] == 'attachment; filename="a.png"'


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_any_method_with_content_creates(draft: Draft, method: str) -> None:
    r = draft.create(CONTENT[:25], method=method)
    assert r.status_code == 201, r.text
    assert r.headers[draft.field] == draft.flag(False)
    assert draft.offset(httpx.URL(r.headers["location"]).path) == 25


def test_incomplete_creation_then_appends(draft: Draft) -> None:
    extra = {"upload_length": "100"} if draft.version >= 6 else {}
    r = draft.create(CONTENT[:25], **extra)
    assert r.status_code == 201
    assert (r.headers["upload-offset"], r.headers[draft.field]) == ("25", draft.flag(False))
    path = httpx.URL(r.headers["location"]).path
    r = draft.append(path, 25, CONTENT[25:60])
    assert r.status_code == (204 if draft.version >= 7 else 201)
    assert (r.headers["upload-offset"], r.headers[draft.field]) == ("60", draft.flag(False))
    assert draft.client.get(path).status_code == 400  # not published before the client completes it
    r = draft.append(path, 60, CONTENT[60:], complete=True)
    assert r.status_code in (200, 201, 204)
    assert (r.headers["upload-offset"], r.headers[draft.field]) == ("100", draft.flag(True))
    assert draft.client.get(path).content == CONTENT


def test_reaching_the_length_does_not_complete(draft: Draft) -> None:
    """-05 on: only Upload-Complete completes an upload; an empty completing append finishes it."""
    path = draft.new(CONTENT, upload_length="100")
    head = draft.head(path)
    assert head.headers[draft.field] == draft.flag(False)
    r = draft.append(path, 100, b"", complete=True)
    assert r.status_code in (200, 201, 204), r.text
    assert r.headers[draft.field] == draft.flag(True)
    assert draft.client.get(path).content == CONTENT


def test_offset_retrieval(draft: Draft) -> None:
    path = draft.new(CONTENT[:25], upload_length="100")
    r = draft.head(path)
    assert r.status_code == 204
    assert r.headers["upload-offset"] == "25"
    assert r.headers[draft.field] == draft.flag(False)
    assert r.headers["cache-control"] == "no-store"
    if draft.version >= 6:
        assert r.headers["upload-length"] == "100"
        assert f"max-size={MAX_SIZE}" in r.headers["upload-limit"]
        assert ("expires=" if draft.version == 6 else "max-age=") in r.headers["upload-limit"]
    else:
        assert "upload-length" not in r.headers and "upload-limit" not in r.headers
    assert draft.head(path, upload_offset="25").status_code == 400  # the request must carry no Upload-Offset


def test_mismatched_offset_is_409_with_the_right_offset(draft: Draft) -> None:
    path = draft.new(CONTENT[:25])
    r = draft.append(path, 50, CONTENT[50:])
    assert r.status_code == 409
    assert r.headers["upload-offset"] == "25"
    problem(r, draft, "mismatching-upload-offset")
    if draft.version >= 6:
        assert r.json()["expected-offset"] == 25 and r.json()["provided-offset"] == 50
    assert draft.offset(path) == 25


def test_append_to_completed_upload(draft: Draft) -> None:
    path = draft.new(CONTENT, complete=True)
    r = draft.append(path, 100, b"more", complete=True)
    assert r.status_code == 400
    problem(r, draft, "inconsistent-upload-length" if draft.version >= 8 else "completed-upload")
    r = draft.append(path, 100, b"more")  # an incomplete append, the other path through the service
    assert r.status_code == 400
    problem(r, draft, "inconsistent-upload-length" if draft.version >= 8 else "completed-upload")
    empty = draft.append(path, 100, b"", complete=True)
    if draft.version >= 6:  # HEAD says Upload-Length from 6; -11: an empty append to it is completed-upload
        assert empty.status_code == 400
        problem(empty, draft, "completed-upload")
    else:  # a completion repeated because its response was lost, with no way to learn the length: a no-op
        assert empty.is_success
        assert empty.headers["upload-offset"] == "100" and empty.headers[draft.field] == draft.flag(True)
    assert draft.append(path, 99, b"", complete=True).status_code == 400  # not at its offset: still refused
    assert draft.client.get(path).content == CONTENT


def test_cancellation(draft: Draft) -> None:
    path = draft.new(CONTENT[:25])
    r = draft.client.delete(path, headers=draft.headers())
    assert r.status_code == 204
    assert draft.head(path).status_code == 404
    assert draft.client.delete(path, headers=draft.headers()).status_code == 404
    other = draft.new(CONTENT[:25])
    assert draft.client.delete(other, headers=draft.headers(upload_offset="25")).status_code == 400


def test_limits_on_options(draft: Draft) -> None:
    r = draft.client.options("/files/", headers=draft.headers())
    assert r.status_code == 204
    if draft.version >= 6:
        limits = dict(item.strip().split("=") for item in r.headers["upload-limit"].split(","))
        assert limits["max-size"] == str(MAX_SIZE)
        assert ("expires" if draft.version == 6 else "max-age") in limits
        assert r.headers["accept-patch"] == PARTIAL
    else:
        assert "upload-limit" not in r.headers
    assert "tus-version" not in r.headers


def test_append_media_type(draft: Draft) -> None:
    """-04 on: appends are application/partial-upload; other types are refused and record nothing."""
    path = draft.new(CONTENT[:25])
    r = draft.append(path, 25, CONTENT[25:50], content_type="application/octet-stream")
    if draft.version >= 6:
        assert r.status_code == 415
        assert r.headers["accept-patch"] == PARTIAL
        assert draft.offset(path) == 25
    else:
        assert r.status_code == 201 and draft.offset(path) == 50


def test_append_without_completeness_field(draft: Draft) -> None:
    """Before -06 only an incomplete append had to say so; from interop 7 the field is required."""
    path = draft.new(CONTENT[:25])
    r = draft.append(path, 25, CONTENT[25:], complete=None)
    if draft.version >= 7:
        assert r.status_code == 400
        assert draft.offset(path) == 25
    else:
        assert r.headers[draft.field] == draft.flag(True)
        assert draft.client.get(path).content == CONTENT


def test_inconsistent_lengths(draft: Draft) -> None:
    r = draft.create(CONTENT, complete=True, upload_length="50")
    assert r.status_code == 400
    problem(r, draft, "inconsistent-upload-length")
    path = draft.new(CONTENT[:25], upload_length="60")
    r = draft.append(path, 25, CONTENT[25:], complete=True)  # 100 bytes in all, not 60
    assert r.status_code == 400
    problem(r, draft, "inconsistent-upload-length")
    r = draft.append(path, 25, CONTENT[25:80])  # beyond the length, incomplete
    assert r.status_code == 400
    assert draft.offset(path) == 25  # nothing recorded


def test_malformed_fields(draft: Draft) -> None:
    r = draft.client.post("/files/", headers={**draft.headers(), draft.field: "true"}, content=b"x")
    assert r.status_code == 400
    assert draft.client.post("/files/", headers=draft.headers(), content=b"x").status_code == 400  # no field
    path = draft.new(CONTENT[:25])
    assert draft.append(path, 25, b"x", upload_offset="-1").status_code == 400
    assert draft.append(path, 25, b"x", upload_offset="abc").status_code == 400
    assert draft.offset(path) == 25


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_digests(draft: Draft) -> None:
    """-04 on (interop 6): Content-Digest, and Repr-Digest when one request carries everything, are verified."""
    good = f"sha-256=:{_b64(hashlib.sha256(CONTENT[25:]).digest())}:"
    bad = f"sha-256=:{_b64(hashlib.sha256(b'other').digest())}:"
    path = draft.new(CONTENT[:25])
    if draft.version < 6:  # not part of these versions: ignored
        assert draft.append(path, 25, CONTENT[25:], complete=True, content_digest=bad).status_code == 201
        return
    r = draft.append(path, 25, CONTENT[25:], complete=True, content_digest=bad)
    assert r.status_code == 400
    assert draft.offset(path) == 25  # a mismatch records nothing
    r = draft.append(path, 25, CONTENT[25:], complete=True, content_digest=good)
    assert r.status_code in (200, 201, 204)
    whole = f"sha-512=:{_b64(hashlib.sha512(CONTENT).digest())}:"
    r = draft.create(CONTENT, complete=True, repr_digest=whole)
    assert r.status_code == 201
    r = draft.create(CONTENT, complete=True, repr_digest=bad)
    assert r.status_code == 400
    created = httpx.URL(r.headers["location"]).path  # the upload exists (its 104 named it) with nothing in it
    assert draft.offset(created) == 0
    assert draft.create(CONTENT, complete=True, content_digest="sha-256=abc").status_code == 400
    assert draft.create(CONTENT, complete=True, content_digest="unknown=:AAAA:").status_code == 400


def test_url_works_with_tus_too(draft: Draft) -> None:
    path = draft.new(CONTENT[:25])
    r = draft.client.head(path, headers={"Tus-Resumable": "1.0.0"})
    assert r.status_code == 200 and r.headers["upload-offset"] == "25"
