"""Repr-Digest over an upload sent in several requests (interop 6 on, where the draft brings in RFC 9530): the
upload remembers the digest from whichever request sent it and is checked when it completes; a mismatch cancels
it, conflicting digests are refused. Against the package's real server process."""

from __future__ import annotations

import base64
import hashlib
import os

import httpx
import pytest

from tests.protocols.ietf.conftest import Draft

CONTENT = os.urandom(300_000)  # three requests of 100,000 bytes
THIRDS = [CONTENT[:100_000], CONTENT[100_000:200_000], CONTENT[200_000:]]
CHUNKD_PROBLEM = "tag:chunkd,2026:problem:"
DIGEST_VERSIONS = [6, 7, 8]


def _sf(algorithm: str, raw: bytes) -> str:
    return f"{algorithm}=:{base64.b64encode(raw).decode()}:"


GOOD = ", ".join([_sf("sha-256", hashlib.sha256(CONTENT).digest()), _sf("sha-512", hashlib.sha512(CONTENT).digest())])
WRONG = _sf("sha-256", hashlib.sha256(CONTENT[:-1] + b"!").digest())


@pytest.fixture(params=DIGEST_VERSIONS, ids=lambda v: f"interop{v}")
def draft(request: pytest.FixtureRequest, client: httpx.Client) -> Draft:
    return Draft(client, request.param)


def _ok(r: httpx.Response) -> None:
    assert r.status_code in (200, 201, 204), r.text


def _problem(r: httpx.Response, kind: str) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == CHUNKD_PROBLEM + kind


@pytest.mark.parametrize("on", ["creation", "append"])
def test_a_correct_digest_over_three_requests_completes(draft: Draft, on: str) -> None:
    digest = {"repr_digest": GOOD}
    path = draft.new(THIRDS[0], **(digest if on == "creation" else {}))
    _ok(draft.append(path, 100_000, THIRDS[1], **(digest if on == "append" else {})))
    _ok(draft.append(path, 200_000, THIRDS[2], complete=True))
    r = draft.head(path)
    assert r.headers["upload-offset"] == str(len(CONTENT)) and r.headers["upload-complete"] == "?1"
    got = draft.client.get(path)
    assert got.status_code == 200 and got.content == CONTENT


def test_a_wrong_digest_is_refused_at_completion_and_cancels_the_upload(draft: Draft) -> None:
    path = draft.new(THIRDS[0], repr_digest=WRONG)
    _ok(draft.append(path, 100_000, THIRDS[1]))  # nothing to check before the upload is complete
    _problem(draft.append(path, 200_000, THIRDS[2], complete=True), "repr-digest-mismatch")
    assert draft.head(path).status_code == 404  # the draft: the upload failed; it is not processed further
    assert draft.client.get(path).status_code in (404, 410)  # never readable as a finished upload
    assert draft.append(path, 300_000, b"", complete=True).status_code == 404


def test_conflicting_digests_are_refused_and_change_nothing(draft: Draft) -> None:
    path = draft.new(THIRDS[0], repr_digest=GOOD)
    _problem(draft.append(path, 100_000, THIRDS[1], repr_digest=WRONG), "conflicting-repr-digest")
    assert draft.offset(path) == 100_000  # the refused append recorded nothing
    # the same digest again (or one algorithm of it) is no conflict, and the recorded one is still checked
    _ok(draft.append(path, 100_000, THIRDS[1], repr_digest=_sf("sha-512", hashlib.sha512(CONTENT).digest())))
    _ok(draft.append(path, 200_000, THIRDS[2], complete=True, repr_digest=GOOD))
    assert draft.client.get(path).content == CONTENT


def test_a_digest_added_later_is_checked_too(draft: Draft) -> None:
    path = draft.new(THIRDS[0], repr_digest=_sf("sha-256", hashlib.sha256(CONTENT).digest()))
    wrong512 = _sf("sha-512", hashlib.sha512(b"other").digest())
    _ok(draft.append(path, 100_000, THIRDS[1], repr_digest=wrong512))  # another algorithm: remembered beside
    _problem(draft.append(path, 200_000, THIRDS[2], complete=True), "repr-digest-mismatch")
    assert draft.head(path).status_code == 404


def test_versions_before_6_ignore_repr_digest(client: httpx.Client) -> None:
    draft = Draft(client, 5)
    path = draft.new(THIRDS[0], repr_digest=WRONG)
    _ok(draft.append(path, 100_000, THIRDS[1] + THIRDS[2], complete=True, repr_digest=GOOD))
    assert draft.client.get(path).content == CONTENT


def test_want_repr_digest_is_answered_once_the_upload_is_complete(draft: Draft) -> None:
    want = {"want_repr_digest": "sha-256=3, sha-512=8, md5=10"}  # md5 is not offered: sha-512 is preferred
    path = draft.new(THIRDS[0], **want)
    r = draft.append(path, 100_000, THIRDS[1], **want)
    _ok(r)
    assert "repr-digest" not in r.headers  # not complete yet: nothing to say
    r = draft.append(path, 200_000, THIRDS[2], complete=True, **want)
    _ok(r)
    assert r.headers["repr-digest"] == _sf("sha-512", hashlib.sha512(CONTENT).digest())
    r = draft.create(CONTENT, complete=True, want_repr_digest="sha-256=1")
    assert r.status_code == 201 and r.headers["repr-digest"] == _sf("sha-256", hashlib.sha256(CONTENT).digest())
