"""Hostile input to tus: status codes with tus's plain-text ``ERR_CODE: message`` bodies, never a 5xx (issue 12)."""

from __future__ import annotations

import httpx
import pytest

from tests.protocols.tus.conftest import TUS, Create, offset_of, patch


def _tus_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/plain") and r.text.startswith(f"{code}: "), r.text
    assert r.headers["tus-resumable"] == "1.0.0"


@pytest.fixture
def finished(client: httpx.Client, create: Create) -> str:
    path = create(10)
    assert patch(client, path, 0, b"0123456789").status_code == 204
    return path


@pytest.mark.parametrize("rng", [f"bytes={'9' * 5000}-", f"bytes=0-{'9' * 5000}", f"bytes=-{'9' * 5000}",
                                 f"bytes={1 << 63}-"])
def test_range_positions_beyond_64_bits(client: httpx.Client, finished: str, rng: str) -> None:
    _tus_error(client.get(finished, headers={"Range": rng}), 400, "ERR_INVALID_REQUEST")
    assert client.get(finished, headers={"Range": "bytes=2-4"}).content == b"234"


def test_unsatisfiable_range_is_a_tus_error(client: httpx.Client, finished: str) -> None:
    r = client.get(finished, headers={"Range": "bytes=10-"})
    _tus_error(r, 416, "ERR_RANGE_NOT_SATISFIABLE")  # was an empty body
    assert r.headers["content-range"] == "bytes */10"


def test_upload_id_with_a_trailing_newline(client: httpx.Client, create: Create) -> None:
    path = create(10)
    r = patch(client, path + "%0a", 0, b"01234")
    _tus_error(r, 404, "ERR_UPLOAD_NOT_FOUND")
    assert offset_of(client, path) == 0
    assert client.head(path + "%0a", headers=TUS).status_code == 404
