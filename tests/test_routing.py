"""Paths no route serves and methods a route does not take: answered in the format of the family the path
prefix belongs to, never Starlette's plain-text ``Not Found`` (issue 12)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("routing") / "data", []).start(timeout=120)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def auth(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token()}"}


def fabric(code: str) -> Callable[[httpx.Response], None]:
    def check(r: httpx.Response) -> None:
        assert r.headers["content-type"] == "application/json" and r.json()["Error"]["Code"] == code, r.text
        assert r.json()["Error"]["Message"]
    return check


def graph(code: str) -> Callable[[httpx.Response], None]:
    def check(r: httpx.Response) -> None:
        err = r.json()["error"]
        assert err["code"] == code and err["message"], r.text
        assert err["innerError"]["request-id"] == r.headers["request-id"]
    return check


def tus(code: str) -> Callable[[httpx.Response], None]:
    def check(r: httpx.Response) -> None:
        assert r.text.startswith(f"{code}: ") and r.headers["tus-resumable"] == "1.0.0", r.text
    return check


def blob(code: str) -> Callable[[httpx.Response], None]:
    def check(r: httpx.Response) -> None:
        assert r.headers["x-ms-error-code"] == code and f"<Code>{code}</Code>" in r.text, r.text
        assert r.headers["x-ms-request-id"]
    return check


def neutral(code: str) -> Callable[[httpx.Response], None]:
    def check(r: httpx.Response) -> None:
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"], r.text
    return check


CASES: list[tuple[str, str, int, Callable[[httpx.Response], None]]] = [
    ("GET", "/$/Nonsense", 404, fabric("E_INVALIDARG")),
    ("DELETE", "/$/GetClusterVersion", 405, fabric("E_INVALIDARG")),
    ("OPTIONS", "/ImageStore/a.txt?api-version=6.0", 405, fabric("E_INVALIDARG")),
    ("GET", "/ImageStore/a%0Ab.txt?api-version=6.0", 400, fabric("E_INVALIDARG")),  # reaches the family now
    ("GET", "/v1.0/nothing", 404, graph("itemNotFound")),
    ("GET", "/beta", 404, graph("itemNotFound")),
    ("OPTIONS", "/v1.0/print/printers", 405, graph("invalidRequest")),
    ("GET", "/v1.0/print/printers%0A", 400, graph("invalidRequest")),
    ("GET", "/beta/external/industryData/nothing", 404, graph("itemNotFound")),
    ("POST", "/beta/external/industryData/operations/x", 405, graph("invalidRequest")),
    ("GET", "/beta/external/industryData/dataConnectors/x/a%0Ab", 404, graph("itemNotFound")),
    ("GET", "/print-upload/a/b", 404, graph("itemNotFound")),
    ("GET", "/files/a/b", 404, tus("ERR_UPLOAD_NOT_FOUND")),
    ("TRACE", "/files/", 405, tus("ERR_METHOD_NOT_ALLOWED")),
    ("GET", "/files/0123%0A", 404, tus("ERR_UPLOAD_NOT_FOUND")),
    ("GET", "/blob/chunkd/c/a%0Ab", 404, blob("ResourceNotFound")),
    ("GET", "/nothing/here%0D%0A", 404, neutral("notFound")),
    ("GET", "/ImageStoreX", 404, neutral("notFound")),
    ("DELETE", "/", 405, neutral("methodNotAllowed")),
]


@pytest.mark.parametrize(("method", "path", "status", "check"), CASES, ids=[f"{m} {p}" for m, p, _, _ in CASES])
def test_unrouted_requests_answer_in_the_familys_format(server: ServerProcess, auth: dict[str, str], method: str,
                                                        path: str, status: int,
                                                        check: Callable[[httpx.Response], None]) -> None:
    r = httpx.request(method, server.url + path, headers=auth)
    assert r.status_code == status, r.text
    check(r)
    if status == 405:
        assert r.headers["allow"]

