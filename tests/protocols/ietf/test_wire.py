"""The IETF draft's wire helpers: the version table, Structured Field parsing, Upload-Limit, digests, the
answers to the draft service's refusals."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from chunkd.protocols import ietf_wire
from chunkd.protocols.ietf_wire import VERSIONS, DraftError
from chunkd.services.ietf_uploads import DraftCode, DraftFault, Limits


def test_the_table_covers_interop_3_to_8_and_only_then_problem_types() -> None:
    assert sorted(VERSIONS) == [3, 4, 5, 6, 7, 8]
    assert [v.interop for v in VERSIONS.values() if v.problems] == [6, 7, 8]
    assert VERSIONS[3].flag(True) == "?0" and VERSIONS[4].flag(True) == "?1"  # Upload-Incomplete is inverted


@pytest.mark.parametrize(("value", "parsed"), [("?1", True), ("?0", False), (" ?1;x=1", True), (None, None)])
def test_sf_boolean(value: str | None, parsed: bool | None) -> None:
    assert ietf_wire.sf_boolean(value, "Upload-Complete") is parsed


@pytest.mark.parametrize("value", ["1", "true", "?", "?2", ""])
def test_malformed_sf_boolean_is_400(value: str) -> None:
    with pytest.raises(DraftError) as info:
        ietf_wire.sf_boolean(value, "Upload-Complete")
    assert info.value.status == 400


@pytest.mark.parametrize("value", ["-1", "1.5", "1" * 16, "abc", ""])
def test_malformed_or_negative_sf_integer_is_400(value: str) -> None:
    with pytest.raises(DraftError):
        ietf_wire.sf_integer(value, "Upload-Offset")


def test_sf_integer() -> None:
    assert ietf_wire.sf_integer("999999999999999", "Upload-Offset") == 999_999_999_999_999
    assert ietf_wire.sf_integer(None, "Upload-Offset") is None


def test_upload_limit_names_the_lifetime_per_version() -> None:
    limits = Limits(max_size=100, max_age=60.0, min_append_size=5)
    assert ietf_wire.upload_limit(VERSIONS[6], limits, 59.5) == "max-size=100, min-append-size=5, expires=59"
    assert ietf_wire.upload_limit(VERSIONS[8], limits, None) == "max-size=100, min-append-size=5"


def test_digest_picks_the_strongest_supported_member() -> None:
    d256, d512 = hashlib.sha256(b"x").digest(), hashlib.sha512(b"x").digest()
    value = f"sha-256=:{base64.b64encode(d256).decode()}:, sha-512=:{base64.b64encode(d512).decode()}:"
    assert ietf_wire.parse_digest(value, "Content-Digest") == ("sha512", d512)
    for bad in ("sha-256=abc", "crc32c=:AAAAAA==:", "sha-256=:!!:"):
        with pytest.raises(DraftError):
            ietf_wire.parse_digest(bad, "Content-Digest")


@pytest.mark.parametrize("code", list(DraftCode), ids=str)
@pytest.mark.parametrize("interop", sorted(VERSIONS))
def test_every_draft_refusal_is_a_client_error_of_a_type_the_version_knows(code: DraftCode, interop: int) -> None:
    version = VERSIONS[interop]
    for empty in (True, False):
        err = ietf_wire.map_fault(DraftFault(code, "why"), version, empty)
        assert 400 <= err.status < 500
        response = ietf_wire.error_response(err, version)
        problem = response.headers["content-type"] == "application/problem+json"
        # the draft's own types where the version defines them; chunkd's (CHUNKD_PROBLEMS) in every version that
        # answers with problem details at all
        own = err.problem in ietf_wire.CHUNKD_PROBLEMS and bool(version.problems)
        assert problem == (err.problem in version.problems or own)
        if own:
            assert json.loads(response.body)["type"] == ietf_wire.CHUNKD_PROBLEM_BASE + err.problem


def test_repr_digest_keeps_every_supported_member() -> None:
    d256, d512 = hashlib.sha256(b"x").digest(), hashlib.sha512(b"x").digest()
    value = f"sha-256=:{base64.b64encode(d256).decode()}:, unknown=:AAAA:, sha-512=:{base64.b64encode(d512).decode()}:"
    assert ietf_wire.parse_digests(value, "Repr-Digest") == {"sha256": d256, "sha512": d512}
    assert ietf_wire.parse_digests(None, "Repr-Digest") == {}
    with pytest.raises(DraftError):
        ietf_wire.parse_digests("unknown=:AAAA:", "Repr-Digest")


def test_filename_from_content_disposition() -> None:
    assert ietf_wire.disposition_filename('attachment; filename="a \\"b\\".txt"') == 'a "b".txt'
    assert ietf_wire.disposition_filename("inline; filename=plain.bin") == "plain.bin"
    assert ietf_wire.disposition_filename(None) == ""


def test_want_repr_digest_picks_the_preferred_supported_algorithm() -> None:
    assert ietf_wire.wanted_digest("sha-256=2, sha-512=9") == "sha512"
    assert ietf_wire.wanted_digest("sha-512=0, sha-256=1") == "sha256"  # 0: not acceptable
    assert ietf_wire.wanted_digest("md5=10") is None
    assert ietf_wire.wanted_digest("sha-256=:AAAA:") is None  # malformed: a preference, ignored
    assert ietf_wire.wanted_digest(None) is None
