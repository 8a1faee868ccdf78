"""Graph side of Industry Data against a real server with authentication on: connectors, getUploadSession,
validate and operations, and the permission matrix of seed 000."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chunkd.auth.permissions import ALL_ROLES
from chunkd.auth.tokens import DEFAULT_TENANT, issue_token, load_or_create_secret
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

PERSONAL_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
PUT = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2025-11-05"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory)


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> dict[str, str]:
    return _bearer(server, "--roles", " ".join(ALL_ROLES))


def _bearer(server: ServerProcess, *args: str) -> dict[str, str]:
    """Like ``chunkd token ARGS`` but in-process (a subprocess per token is slow on a busy machine)."""
    opts = dict(zip(args[::2], args[1::2], strict=True))
    scopes = opts.get("--scopes", "").split()
    token = issue_token(load_or_create_secret(server.data_dir), tenant=opts.get("--tenant", DEFAULT_TENANT),
                        user="00000000-0000-0000-0000-00000000a11c" if scopes else "", scopes=scopes,
                        roles=opts.get("--roles", "").split())
    return {"Authorization": "Bearer " + token}


def _put(session: dict[str, Any], name: str, data: bytes) -> None:
    url, q = split_sas(session["sessionUrl"])
    r = httpx.put(f"{url}/{name}", params=q, headers=PUT, content=data)
    assert r.status_code == 201, r.text


def _names(session: dict[str, Any]) -> list[str]:
    url, q = split_sas(session["sessionUrl"])
    r = httpx.get(url, params={**q, "restype": "container", "comp": "list"})
    assert r.status_code == 200, r.text
    return [p.split("</Name>")[0] for p in r.text.split("<Name>")[1:]]


def _graph_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    assert err["innerError"]["request-id"] == r.headers["request-id"]


def test_connector_crud(server: ServerProcess, admin: dict[str, str]) -> None:
    base = server.url + BETA
    created = create_connector(server.url, admin, fileFormat={"code": "schoolDataSyncV2Rev1"})
    assert created["@odata.type"] == CONNECTOR and created["displayName"] == "SDS upload"
    assert created["@odata.context"].endswith("#external/industryData/dataConnectors/$entity")
    cid = created["id"]
    got = httpx.get(f"{base}/dataConnectors/{cid}", headers=admin).json()
    assert got["id"] == cid and got["fileFormat"] == {"code": "schoolDataSyncV2Rev1"}
    assert cid in [c["id"] for c in httpx.get(f"{base}/dataConnectors", headers=admin).json()["value"]]
    r = httpx.patch(f"{base}/dataConnectors/{cid}", json={"displayName": "Renamed"}, headers=admin)
    assert r.status_code == 204
    assert httpx.get(f"{base}/dataConnectors/{cid}", headers=admin).json()["displayName"] == "Renamed"
    for bad in ({"@odata.type": CONNECTOR, "displayName": "x" * 101},
                {"@odata.type": CONNECTOR},
                {"@odata.type": "#microsoft.graph.industryData.oneRosterApiDataConnector", "displayName": "x"},
                {"@odata.type": CONNECTOR, "displayName": "x", "colour": "red"}):
        _graph_error(httpx.post(f"{base}/dataConnectors", json=bad, headers=admin), 400, "BadRequest")
    _graph_error(httpx.patch(f"{base}/dataConnectors/{cid}", json={"displayName": ""}, headers=admin), 400,
                 "BadRequest")
    # another tenant sees nothing of it
    other = _bearer(server, "--tenant", "11111111-2222-3333-4444-555555555555", "--roles",
                    "IndustryData-DataConnector.ReadWrite.All")
    _graph_error(httpx.get(f"{base}/dataConnectors/{cid}", headers=other), 404, "itemNotFound")
    assert cid not in [c["id"] for c in httpx.get(f"{base}/dataConnectors", headers=other).json()["value"]]
    assert httpx.delete(f"{base}/dataConnectors/{cid}", headers=admin).status_code == 204
    _graph_error(httpx.get(f"{base}/dataConnectors/{cid}", headers=admin), 404, "itemNotFound")


def test_upload_session_keeps_or_resets_its_container(server: ServerProcess, admin: dict[str, str]) -> None:
    cid = create_connector(server.url, admin)["id"]
    first = upload_session(server.url, cid, headers=admin)
    assert set(first) >= {"containerId", "containerExpirationDateTime", "sessionExpirationDateTime", "sessionUrl"}
    assert first["containerExpirationDateTime"] > first["sessionExpirationDateTime"]
    url, q = split_sas(first["sessionUrl"])
    assert url == f"{server.url}/chunkd/{first['containerId']}"  # the emulator layout the Go SDK reads
    assert (q["sr"], q["sp"], q["spr"]) == ("c", "racwdl", "https,http") and q["se"].startswith(
        first["sessionExpirationDateTime"][:19])
    _put(first, "orgs.csv", b"sourcedId,name\n")
    again = upload_session(server.url, cid, headers=admin)
    assert again["containerId"] == first["containerId"] and _names(again) == ["orgs.csv"]
    # the function segment is case-insensitive; the inline parameter form works too
    for path in (GET_SESSION.replace("getUploadSession", "GetUploadSession"), GET_SESSION.lower(),
                 GET_SESSION + "(resetSession=false)"):
        r = httpx.get(f"{server.url}{BETA}/dataConnectors/{cid}/{path}", headers=admin)
        assert r.status_code == 200 and r.json()["containerId"] == first["containerId"], r.text
    reset = upload_session(server.url, cid, reset=True, headers=admin)
    assert reset["containerId"] != first["containerId"] and _names(reset) == []
    r = httpx.get(url, params={**q, "restype": "container", "comp": "list"})
    assert (r.status_code, r.headers["x-ms-error-code"]) == (404, "ContainerNotFound")
    assert upload_session(server.url, cid, headers=admin)["containerId"] == reset["containerId"]
    _graph_error(httpx.get(f"{server.url}{BETA}/dataConnectors/{cid}/{GET_SESSION}?resetSession=maybe",
                           headers=admin), 400, "BadRequest")
    _graph_error(httpx.get(f"{server.url}{BETA}/dataConnectors/nope/{GET_SESSION}", headers=admin), 404,
                 "itemNotFound")


@pytest.mark.parametrize(("token", "allowed"), [
    (("--scopes", "IndustryData-DataConnector.Upload"), {"session", "validate", "operation"}),
    (("--roles", "IndustryData-DataConnector.Upload"), {"session", "validate", "operation"}),
    (("--scopes", "IndustryData-DataConnector.ReadWrite.All"), {"create", "list", "session", "validate", "operation"}),
    (("--roles", "IndustryData-DataConnector.ReadWrite.All"), {"create", "list", "session", "validate", "operation"}),
    (("--scopes", "IndustryData-DataConnector.Read.All"), {"list", "operation"}),
    (("--roles", "PrintJob.ReadWrite.All"), set()),
    (("--tenant", PERSONAL_TENANT, "--scopes", "IndustryData-DataConnector.ReadWrite.All"), set()),
])
def test_permission_matrix(server: ServerProcess, admin: dict[str, str], token: tuple[str, ...],
                           allowed: set[str]) -> None:
    headers = _bearer(server, *token)
    cid = create_connector(server.url, admin)["id"]
    session = upload_session(server.url, cid, headers=admin)
    _put(session, "orgs.csv", b"sourcedId\n1\n")
    op = httpx.post(f"{server.url}{BETA}/dataConnectors/{cid}/validate", headers=admin).headers["Location"]
    upload_session(server.url, cid, headers=admin)  # a fresh session for the caller's validate
    calls = {
        "create": lambda: httpx.post(f"{server.url}{BETA}/dataConnectors", headers=headers,
                                     json={"@odata.type": CONNECTOR, "displayName": "x"}),
        "list": lambda: httpx.get(f"{server.url}{BETA}/dataConnectors", headers=headers),
        "session": lambda: httpx.get(f"{server.url}{BETA}/dataConnectors/{cid}/{GET_SESSION}", headers=headers),
        "validate": lambda: httpx.post(f"{server.url}{BETA}/dataConnectors/{cid}/microsoft.graph.industryData.validate",
                                       headers=headers),
        "operation": lambda: httpx.get(op, headers=headers),
    }
    for name, call in calls.items():
        r = call()
        if name in allowed:
            assert r.status_code in (200, 201, 202), (name, r.text)
        else:
            _graph_error(r, 403, "accessDenied")
    _graph_error(httpx.get(f"{server.url}{BETA}/dataConnectors"), 401, "InvalidAuthenticationToken")


def _validate(server: ServerProcess, admin: dict[str, str], cid: str, action: str = "validate") -> dict[str, Any]:
    r = httpx.post(f"{server.url}{BETA}/dataConnectors/{cid}/{action}", headers=admin)
    assert r.status_code == 202, r.text
    assert r.headers["Location"].startswith(f"{server.url}{BETA}/operations/")
    op = httpx.get(r.headers["Location"], headers=admin)
    assert op.status_code == 200, op.text
    body = dict(op.json())
    assert body["@odata.type"] == "#microsoft.graph.industryData.fileValidateOperation"
    assert body["status"] == "succeeded" and body["createdDateTime"] <= body["lastActionDateTime"]
    return body


def _codes(problems: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((p["code"], p["target"]) for p in problems)


def test_validate_missing_file_then_clean_set(server: ServerProcess, admin: dict[str, str]) -> None:
    cid = create_connector(server.url, admin)["id"]
    s = upload_session(server.url, cid, headers=admin)
    _put(s, "orgs.csv", b"sourcedId,name\n1,North\n")
    _put(s, "users.csv", b"\xef\xbb\xbfsourcedId,username\n1,ana\n")
    op = _validate(server, admin, cid)
    assert _codes(op["errors"]) == [("RequiredFileNotFound", "roles.csv")]
    assert ("OptionalFileNotFound", "classes.csv") in _codes(op["warnings"])
    assert op["validatedFiles"] == ["orgs.csv", "users.csv"]
    # the validated session is finalised; the next getUploadSession opens a new, empty container
    s2 = upload_session(server.url, cid, headers=admin)
    assert s2["containerId"] != s["containerId"] and _names(s2) == []
    for name in ("orgs.csv", "users.csv", "roles.csv"):
        _put(s2, name, b"sourcedId,x\n1,y\n")
    op = _validate(server, admin, cid, "microsoft.graph.industryData.validate")
    assert op["errors"] == [] and sorted(op["validatedFiles"]) == ["orgs.csv", "roles.csv", "users.csv"]


def test_validate_reports_bad_files(server: ServerProcess, admin: dict[str, str]) -> None:
    cid = create_connector(server.url, admin, fileFormat={"code": "schoolDataSyncV1"})["id"]
    _graph_error(httpx.post(f"{server.url}{BETA}/dataConnectors/{cid}/validate", headers=admin), 400, "BadRequest")
    s = upload_session(server.url, cid, headers=admin)
    assert _codes(_validate(server, admin, cid)["errors"])[0] == ("EmptyContainer", s["containerId"])
    s = upload_session(server.url, cid, headers=admin)
    _put(s, "School.csv", b"SIS ID,Name\n1,\xff\xfe\n")
    _put(s, "Section.csv", b"")
    _put(s, "Student.csv", b"SIS ID,,Name\n")
    _put(s, "readme.txt", b"hello")
    url, q = split_sas(s["sessionUrl"])
    r = httpx.put(f"{url}/Teacher.csv", params={**q, "comp": "block", "blockid": "QUFBQQ=="}, content=b"a\n")
    assert r.status_code == 201
    op = _validate(server, admin, cid)
    assert _codes(op["errors"]) == sorted([
        ("InvalidFileEncoding", "School.csv"), ("MissingHeaderRow", "Section.csv"),
        ("InvalidHeaderRow", "Student.csv"), ("UncommittedFile", "Teacher.csv"),
        ("RequiredFileNotFound", "StudentEnrollment.csv"), ("RequiredFileNotFound", "Teacher.csv"),
        ("RequiredFileNotFound", "TeacherRoster.csv")])
    assert _codes(op["warnings"]) == [("UnexpectedFile", "readme.txt")]
    _graph_error(httpx.get(f"{server.url}{BETA}/operations/nope", headers=admin), 404, "itemNotFound")


def test_validate_racing_with_uploads_is_all_or_nothing_per_file(server: ServerProcess,
                                                                 admin: dict[str, str]) -> None:
    """Writes that got 201 are exactly the files listed and validated; refused writes left nothing."""
    from concurrent.futures import ThreadPoolExecutor

    cid = create_connector(server.url, admin)["id"]
    s = upload_session(server.url, cid, headers=admin)
    url, q = split_sas(s["sessionUrl"])
    for name in ("orgs.csv", "users.csv", "roles.csv"):
        _put(s, name, b"sourcedId,x\n1,y\n")

    def put(i: int) -> tuple[str, int]:
        name = f"extra{i:03d}.csv"
        with httpx.Client() as c:
            return name, c.put(f"{url}/{name}", params=q, headers=PUT, content=b"sourcedId,x\n1,y\n" * 2000).status_code

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(put, i) for i in range(60)]
        time_to_validate = futures[20].result()  # let some land first
        assert time_to_validate[1] == 201
        op = _validate(server, admin, cid)
        results = dict(f.result() for f in futures)
    ok = {n for n, status in results.items() if status == 201}
    assert set(results.values()) <= {201, 403}
    assert any(status == 403 for status in results.values()) or len(ok) == 60
    listed = set(_names(s)) - {"orgs.csv", "users.csv", "roles.csv"}
    assert listed == ok
    assert set(op["validatedFiles"]) == ok | {"orgs.csv", "users.csv", "roles.csv"}
