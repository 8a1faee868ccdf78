"""Get Blob with Range positions no 64-bit offset can hold: Azure error XML, not a 500 (issue 12). The Range
parser is shared with the other families (chunkd.protocols._http.parse_range)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.protocols.industry_data.helpers import new_session_url, split_sas, start_server
from tests.serverproc import ServerProcess

V = {"x-ms-version": "2026-10-06"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory, "--no-auth")


@pytest.mark.parametrize("header", ["range", "x-ms-range"])
def test_huge_range_positions_are_400(server: ServerProcess, header: str) -> None:
    url, sas = split_sas(new_session_url(server.url))
    r = httpx.put(f"{url}/a.csv", params=sas, headers={**V, "x-ms-blob-type": "BlockBlob"}, content=b"0123456789")
    assert r.status_code == 201, r.text
    for value in (f"bytes={'9' * 5000}-", f"bytes=0-{'9' * 5000}", f"bytes=-{'9' * 5000}"):
        r = httpx.get(f"{url}/a.csv", params=sas, headers={**V, header: value})
        assert (r.status_code, r.headers.get("x-ms-error-code")) == (400, "InvalidHeaderValue"), r.text
        assert "<HeaderName>Range</HeaderName>" in r.text
    r = httpx.get(f"{url}/a.csv", params=sas, headers={**V, header: "bytes=10-"})
    assert (r.status_code, r.headers.get("x-ms-error-code")) == (416, "InvalidRange"), r.text
    assert httpx.get(f"{url}/a.csv", params=sas, headers={**V, header: "bytes=2-4"}).content == b"234"
