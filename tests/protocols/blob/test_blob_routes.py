"""Where the container endpoint lives: the emulator layout /{account}/{container} (the sessionUrl), the older
/blob/{account}/... alias, account-level paths, account names that would collide with other families, and
hostile numbers -- all answered in Blob XML, never a plain-text 404 or a 500."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.convertors import CONVERTOR_TYPES
from starlette.routing import Mount, Route

from chunkd.protocols.blob import RESERVED, check_account
from chunkd.server.app import create_app
from chunkd.settings import Settings
from tests.protocols.industry_data.helpers import new_session_url, split_sas, start_server
from tests.serverproc import ServerProcess, free_port

V = {"x-ms-version": "2025-11-05"}
PUT = {**V, "x-ms-blob-type": "BlockBlob"}
HUGE = "9" * 5000  # beyond the 4,300 digits int() converts


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory, "--no-auth")


def _blob_error(r: httpx.Response, status: int, code: str) -> None:
    assert (r.status_code, r.headers.get("x-ms-error-code")) == (status, code), r.text
    assert r.headers["content-type"].startswith("application/xml") and f"<Code>{code}</Code>" in r.text
    assert r.headers["x-ms-request-id"]


def test_emulator_layout_and_alias_are_one_container(server: ServerProcess) -> None:
    url, sas = split_sas(new_session_url(server.url))
    cid = url.rsplit("/", 1)[1]
    assert url == f"{server.url}/chunkd/{cid}"
    alias = f"{server.url}/blob/chunkd/{cid}"
    assert httpx.put(f"{url}/dir/a.csv", params=sas, headers=PUT, content=b"a").status_code == 201
    assert httpx.put(f"{alias}/b.csv", params=sas, headers=PUT, content=b"b").status_code == 201
    for base in (url, alias):
        assert httpx.get(f"{base}/dir/a.csv", params=sas).content == b"a"
        assert httpx.get(f"{base}/b.csv", params=sas).content == b"b"
        listing = httpx.get(base, params={**sas, "restype": "container", "comp": "list"}, headers=V)
        assert re.findall(r"<Name>([^<]*)</Name>", listing.text) == ["b.csv", "dir/a.csv"]
        assert f'ServiceEndpoint="{base.rsplit("/", 1)[0]}"' in listing.text
    # the SAS is signed over /blob/chunkd/{cid} whichever layout carries it; another account's name fails it
    r = httpx.get(f"{server.url}/blob/other/{cid}/b.csv", params=sas, headers=V)
    _blob_error(r, 403, "AuthenticationFailed")


def test_account_level_paths_answer_blob_errors(server: ServerProcess) -> None:
    _, sas = split_sas(new_session_url(server.url))
    for path in ("/chunkd", "/chunkd/", "/blob/chunkd", "/blob/chunkd/"):
        r = httpx.get(f"{server.url}{path}", params={**sas, "comp": "list"}, headers=V)
        _blob_error(r, 403, "AuthorizationResourceTypeMismatch")
    for path in ("/blob", "/blob/"):
        _blob_error(httpx.get(f"{server.url}{path}", params={"comp": "list"}, headers=V), 400, "InvalidUri")
    head = httpx.head(f"{server.url}/chunkd", params={"comp": "list"})
    assert (head.status_code, head.headers["x-ms-error-code"], head.content) == (
        403, "AuthorizationResourceTypeMismatch", b"")
    # the admin API shares its first segment with the default account and still answers
    stats = httpx.get(f"{server.url}/chunkd/v1/stats")
    assert stats.status_code == 200 and stats.headers["content-type"].startswith("application/json")


def test_hostile_numbers_are_400_in_blob_xml(server: ServerProcess) -> None:
    url, sas = split_sas(new_session_url(server.url))
    assert httpx.put(f"{url}/a.csv", params=sas, headers=PUT, content=b"0123456789").status_code == 201
    for value in (HUGE, "\u00b2", "-1", "1e3", " 5"):
        r = httpx.get(url, params={**sas, "restype": "container", "comp": "list", "maxresults": value}, headers=V)
        _blob_error(r, 400, "InvalidQueryParameterValue")
    r = httpx.get(url, params={**sas, "restype": "container", "comp": "list", "maxresults": "123456789"}, headers=V)
    _blob_error(r, 400, "OutOfRangeQueryParameterValue")
    for header in ("Range", "x-ms-range"):
        for value in (f"bytes={HUGE}-", f"bytes=0-{HUGE}", f"bytes=-{HUGE}"):
            r = httpx.get(f"{url}/a.csv", params=sas, headers={**V, header: value})
            assert r.status_code == 400 and r.headers["x-ms-error-code"], (header, value, r.status_code)
            assert r.headers["content-type"].startswith("application/xml")
    assert httpx.get(f"{url}/a.csv", params=sas, headers={"Range": "bytes=2-4"}).content == b"234"


def test_account_names_that_would_collide_are_refused() -> None:
    for good in ("chunkd", "devstoreaccount1", "abc", "a" * 24):
        assert check_account(good) == good
    for bad in ("files", "beta", "blob", "imagestore", "ab", "a" * 25, "Chunkd", "my-account", "v1.0", "$",
                "chunkd\n", ""):
        with pytest.raises(ValueError):
            check_account(bad)


def _names(segment: str) -> set[str]:
    """The names a first path segment matches: itself, or each name of a converter that matches a fixed
    set of names (``v1\\.0|beta``). A converter matching anything else would let no account be safe."""
    converter = re.fullmatch(r"\{\w+:(\w+)\}", segment)
    if converter is None:
        return {segment}
    alternatives = CONVERTOR_TYPES[converter.group(1)].regex.split("|")
    names = {re.sub(r"\\(.)", r"\1", alt) for alt in alternatives}
    assert all(re.fullmatch(r"[\w.$-]+", n) for n in names), f"{segment} matches more than a set of names"
    return names


def test_reserved_names_cover_every_other_family(tmp_path: Path) -> None:
    """A new top-level path in another family must be added to RESERVED, or an account could shadow it."""
    app = create_app(Settings(data_dir=tmp_path / "data"))
    firsts: set[str] = set()
    for route in app.routes:
        if isinstance(route, Route | Mount):
            firsts.update(_names(route.path.strip("/").split("/")[0]))
    assert "ImageStore" in firsts and "files" in firsts  # the walk sees the other families
    assert {"v1.0", "beta"} <= firsts  # Graph's version segment is a converter: its names are seen too
    # "" is Service Fabric's root; "chunkd" is both the default account and the admin API's /chunkd/v1
    # (they cannot collide: admin's second segment "v1" is no valid container name, and admin is matched first)
    assert firsts - {"", "chunkd"} <= RESERVED


def test_serve_refuses_a_colliding_account(tmp_path: Path) -> None:
    for name in ("files", "Not-Azure"):
        out = subprocess.run([sys.executable, "-m", "chunkd.cli.main", "serve", "--port", str(free_port()),
                              "--data-dir", str(tmp_path / "data"), "--no-auth"],
                             env={**os.environ, "CHUNKD_BLOB_ACCOUNT": name}, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 2, out.stderr
        assert "CHUNKD_BLOB_ACCOUNT" in out.stderr and name in out.stderr
