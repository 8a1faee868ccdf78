"""SAS attacks against a real server: each refused with Azure's code, and nothing is written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from chunkd.auth import sas
from tests.protocols.industry_data.helpers import (
    BETA,
    create_connector,
    split_sas,
    start_server,
    upload_session,
)
from tests.serverproc import ServerProcess

PUT = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2025-11-05"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory, "--no-auth")


def _names(container_url: str, q: dict[str, str]) -> list[str]:
    r = httpx.get(container_url, params={**q, "restype": "container", "comp": "list"})
    assert r.status_code == 200, r.text
    return [part.split("</Name>")[0] for part in r.text.split("<Name>")[1:]]


def _attempt(url: str, q: dict[str, str], name: str = "evil.csv") -> httpx.Response:
    return httpx.put(f"{url}/{name}?{urlencode(q)}", content=b"a,b\n1,2\n", headers=PUT)


def _forge(server: ServerProcess, container: str, **kw: object) -> dict[str, str]:
    key = sas.load_or_create_account_key(server.data_dir)
    args: dict[str, object] = {"permissions": "racwdl", "expiry": datetime.now(UTC) + timedelta(hours=1)}
    args.update(kw)
    token = sas.sign_container_sas(key, "chunkd", container, **args)  # type: ignore[arg-type]
    return dict(parse_qsl(token))


def _case(server: ServerProcess, name: str) -> tuple[str, dict[str, str], str]:
    """(container URL, its SAS, container id) of a fresh connector's session."""
    s = upload_session(server.url, create_connector(server.url)["id"])
    url, q = split_sas(s["sessionUrl"])
    return url, q, s["containerId"]


def _assert_refused(r: httpx.Response, status: int, code: str) -> None:
    assert (r.status_code, r.headers.get("x-ms-error-code")) == (status, code), r.text
    if r.request.method != "HEAD":
        assert f"<Code>{code}</Code>" in r.text


def test_tampered_and_forged_tokens(server: ServerProcess) -> None:
    url, q, cid = _case(server, "a")
    assert _attempt(url, q, "ok.csv").status_code == 201
    sig = q["sig"]
    tampered = [
        ({**q, "sig": ("B" if sig[0] != "B" else "C") + sig[1:]}, 403, "AuthenticationFailed"),
        ({**q, "sp": "racwdlx"}, 403, "AuthenticationFailed"),
        ({**q, "se": "2099-01-01T00:00:00Z"}, 403, "AuthenticationFailed"),
        ({k: v for k, v in q.items() if k != "sig"}, 401, "NoAuthenticationInformation"),
        (_forge(server, cid, expiry=datetime.now(UTC) - timedelta(minutes=1)), 403, "AuthenticationFailed"),
        (_forge(server, cid, start=datetime.now(UTC) + timedelta(hours=1)), 403, "AuthenticationFailed"),
        (_forge(server, cid, protocol="https"), 403, "AuthorizationProtocolMismatch"),
        (_forge(server, cid, permissions="rl"), 403, "AuthorizationPermissionMismatch"),
    ]
    for params, status, code in tampered:
        _assert_refused(_attempt(url, params), status, code)
    # a tampered SAS cannot read either, and nothing was written
    _assert_refused(httpx.head(f"{url}/ok.csv", params={**q, "sp": "r"}), 403, "AuthenticationFailed")
    assert _names(url, q) == ["ok.csv"]


def test_changed_container_name_and_sas_of_another_container(server: ServerProcess) -> None:
    url_a, q_a, _ = _case(server, "a")
    url_b, q_b, _ = _case(server, "b")
    _assert_refused(_attempt(url_b, q_a), 403, "AuthenticationFailed")  # A's SAS on B
    _assert_refused(_attempt(url_a + "x", q_a), 403, "AuthenticationFailed")  # renamed container in the path
    # a validly signed SAS for a container that does not exist
    ghost = "00000000-0000-0000-0000-000000000000"
    _assert_refused(_attempt(url_a.rsplit("/", 1)[0] + "/" + ghost, _forge(server, ghost)), 404, "ContainerNotFound")
    assert _names(url_a, q_a) == [] and _names(url_b, q_b) == []


def test_sas_after_reset_and_after_validate(server: ServerProcess) -> None:
    conn = create_connector(server.url)["id"]
    old_url, old_q = split_sas(upload_session(server.url, conn)["sessionUrl"])
    assert _attempt(old_url, old_q, "orgs.csv").status_code == 201
    new_url, new_q = split_sas(upload_session(server.url, conn, reset=True)["sessionUrl"])
    assert new_url != old_url
    _assert_refused(_attempt(old_url, old_q), 404, "ContainerNotFound")
    _assert_refused(httpx.get(f"{old_url}/orgs.csv", params=old_q), 404, "ContainerNotFound")
    assert _attempt(new_url, new_q, "orgs.csv").status_code == 201
    r = httpx.post(f"{server.url}{BETA}/dataConnectors/{conn}/validate")
    assert r.status_code == 202
    _assert_refused(_attempt(new_url, new_q), 403, "AuthorizationFailure")
    _assert_refused(httpx.delete(f"{new_url}/orgs.csv", params=new_q), 403, "AuthorizationFailure")
    block = {**new_q, "comp": "block", "blockid": "QUFBQQ=="}
    _assert_refused(httpx.put(f"{new_url}/evil.csv", params=block, content=b"x"), 403, "AuthorizationFailure")
    assert _names(new_url, new_q) == ["orgs.csv"]  # reads still work; the set is what was validated
