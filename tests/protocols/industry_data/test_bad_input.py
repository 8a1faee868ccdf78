"""Hostile input to Industry Data: Graph errors (never a 5xx) and nothing changed (issue 12)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chunkd.auth.permissions import ALL_ROLES
from chunkd.auth.tokens import issue_token, load_or_create_secret
from tests.protocols.industry_data.helpers import (
    BETA,
    CONNECTOR,
    GET_SESSION,
    create_connector,
    split_sas,
    start_server,
    upload_session,
)
from tests.serverproc import ServerProcess

PUT = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2025-11-05"}
GRAPH_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{7}Z")  # seed 000's form


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory)


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_token(load_or_create_secret(server.data_dir), roles=list(ALL_ROLES))}


def _graph_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"], r.text
    assert err["innerError"]["request-id"] == r.headers["request-id"]


def _put(session: dict[str, Any], name: str, data: bytes) -> None:
    url, q = split_sas(session["sessionUrl"])
    r = httpx.put(f"{url}/{name}", params=q, headers=PUT, content=data, timeout=60)
    assert r.status_code == 201, r.text


def _names(session: dict[str, Any]) -> list[str]:
    url, q = split_sas(session["sessionUrl"])
    r = httpx.get(url, params={**q, "restype": "container", "comp": "list"})
    assert r.status_code == 200, r.text
    return [p.split("</Name>")[0] for p in r.text.split("<Name>")[1:]]


def _chunked(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), 64 << 10):
        yield data[i:i + (64 << 10)]


def test_oversized_and_nested_json_bodies(server: ServerProcess, admin: dict[str, str]) -> None:
    base = server.url + BETA
    cid = create_connector(server.url, admin)["id"]
    before = httpx.get(f"{base}/dataConnectors", headers=admin).json()["value"]
    big = json.dumps({"@odata.type": CONNECTOR, "displayName": "x" * (2 << 20)}).encode()
    for body in (lambda: big, lambda: _chunked(big)):  # with and without Content-Length
        _graph_error(httpx.post(f"{base}/dataConnectors", content=body(), headers=admin), 413, "invalidRequest")
        _graph_error(httpx.patch(f"{base}/dataConnectors/{cid}", content=body(), headers=admin), 413,
                     "invalidRequest")
    nested = b"[" * 100_000 + b"]" * 100_000  # RecursionError, not ValueError, in json.loads
    too_deep = b'{"@odata.type": "' + CONNECTOR.encode() + b'", "fileFormat": ' + b'{"a": ' * 70 + b"1" + b"}" * 71
    for body in (nested, too_deep, b'{"displayName": NaN}'):
        _graph_error(httpx.post(f"{base}/dataConnectors", content=body, headers=admin), 400, "invalidRequest")
        _graph_error(httpx.patch(f"{base}/dataConnectors/{cid}", content=body, headers=admin), 400, "invalidRequest")
    assert httpx.get(f"{base}/dataConnectors/{cid}", headers=admin).json()["displayName"] == "SDS upload"
    assert httpx.get(f"{base}/dataConnectors", headers=admin).json()["value"] == before


MALFORMED_CALLS = [
    "(resetSession=true",  # accepted before, and reset the container
    "(resetSession=true))",
    "(resetSession=true)(resetSession=true)",
    "(resetSession=true)x",
    "((resetSession=true)",
    "(resetSession)",
    "(resetSession=)x",
    "(reset=true)",
    "(resetSession=yes)",
    "(resetSession='true')",  # a string literal, not an Edm.Boolean
    "(resetSession=true,)",
    "(resetSession=true,resetSession=true)",
    "(resetSession=true,other=1)",
]


@pytest.mark.parametrize("call", MALFORMED_CALLS)
def test_malformed_function_calls_change_nothing(server: ServerProcess, admin: dict[str, str], call: str) -> None:
    cid = create_connector(server.url, admin)["id"]
    session = upload_session(server.url, cid, headers=admin)
    _put(session, "orgs.csv", b"sourcedId,name\n")
    r = httpx.get(f"{server.url}{BETA}/dataConnectors/{cid}/{GET_SESSION}{call}", headers=admin)
    _graph_error(r, 400, "BadRequest")
    again = upload_session(server.url, cid, headers=admin)
    assert again["containerId"] == session["containerId"] and _names(again) == ["orgs.csv"]


def test_reset_given_twice_is_refused(server: ServerProcess, admin: dict[str, str]) -> None:
    cid = create_connector(server.url, admin)["id"]
    session = upload_session(server.url, cid, headers=admin)
    r = httpx.get(f"{server.url}{BETA}/dataConnectors/{cid}/{GET_SESSION}(resetSession=true)",
                  params={"resetSession": "true"}, headers=admin)
    _graph_error(r, 400, "BadRequest")
    assert upload_session(server.url, cid, headers=admin)["containerId"] == session["containerId"]
    # the well-formed inline call still resets
    r = httpx.get(f"{server.url}{BETA}/dataConnectors/{cid}/{GET_SESSION}(resetSession=true)", headers=admin)
    assert r.status_code == 200 and r.json()["containerId"] != session["containerId"], r.text


def test_dates_have_seven_fraction_digits(server: ServerProcess, admin: dict[str, str]) -> None:
    cid = create_connector(server.url, admin)["id"]
    session = upload_session(server.url, cid, headers=admin)
    for name in ("sessionExpirationDateTime", "containerExpirationDateTime"):
        assert GRAPH_DATE.fullmatch(session[name]), session[name]
    _put(session, "orgs.csv", b"sourcedId,name\n1,x\n")
    op = httpx.post(f"{server.url}{BETA}/dataConnectors/{cid}/validate", headers=admin).headers["Location"]
    got = httpx.get(op, headers=admin).json()
    for name in ("createdDateTime", "lastActionDateTime"):
        assert GRAPH_DATE.fullmatch(got[name]), got[name]
    assert got["createdDateTime"] <= got["lastActionDateTime"]


def test_an_endless_header_row_is_an_error_not_a_buffer(server: ServerProcess, admin: dict[str, str]) -> None:
    """validate holds at most MAX_HEADER_ROW characters of a file: a longer first line is refused."""
    cid = create_connector(server.url, admin)["id"]
    session = upload_session(server.url, cid, headers=admin)
    header = ",".join(f"column{i}" for i in range(200_000)).encode()  # 1.6 MB of distinct names, no newline
    _put(session, "orgs.csv", header)
    _put(session, "users.csv", header + b"\n1\n")
    _put(session, "roles.csv", b"sourcedId,role\n1,x\n")
    op = httpx.post(f"{server.url}{BETA}/dataConnectors/{cid}/validate", headers=admin).headers["Location"]
    errors = {(e["code"], e["target"]) for e in httpx.get(op, headers=admin).json()["errors"]}
    assert errors == {("InvalidHeaderRow", "orgs.csv"), ("InvalidHeaderRow", "users.csv")}
