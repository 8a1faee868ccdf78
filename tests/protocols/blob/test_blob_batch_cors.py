"""Blob Batch on the wire (what the SDK never sends: malformed bodies, foreign paths, mixed SAS tokens) and CORS
for browsers, with raw HTTP against real servers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.protocols.industry_data.helpers import new_session_url, split_sas, start_server
from tests.serverproc import ServerProcess

V = {"x-ms-version": "2025-11-05"}
PUT = {**V, "x-ms-blob-type": "BlockBlob"}
APP = "http://app.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory, "--no-auth")


class Box:
    """A fresh container with a few blobs; ``batch([(method, path, headers)])`` posts a Blob Batch."""

    def __init__(self, server: ServerProcess, *names: str) -> None:
        self.session_url = new_session_url(server.url)
        self.url, self.sas = split_sas(self.session_url)
        self.query = self.session_url.split("?", 1)[1]
        self.path = self.url[len(server.url):]  # /chunkd/{cid}
        for name in names:
            assert httpx.put(f"{self.url}/{name}", params=self.sas, headers=PUT, content=name.encode()).status_code \
                == 201

    def names(self) -> list[str]:
        r = httpx.get(self.url, params={**self.sas, "restype": "container", "comp": "list"}, headers=V)
        return re.findall(r"<Blob><Name>([^<]*)</Name>", r.text)

    def batch(self, subs: list[tuple[str, str, dict[str, str]]], *, query: str | None = None,
              body: bytes | None = None, content_type: str = "multipart/mixed; boundary=batch_b1") -> httpx.Response:
        if body is None:
            body = b"".join(
                (f"--batch_b1\r\nContent-Type: application/http\r\nContent-ID: {i}\r\n"
                 f"Content-Transfer-Encoding: binary\r\n\r\n{method} {path} HTTP/1.1\r\n"
                 + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Content-Length: 0\r\n\r\n\r\n").encode()
                for i, (method, path, headers) in enumerate(subs)) + b"--batch_b1--\r\n"
        return httpx.post(f"{self.url}?restype=container&comp=batch&{query or self.query}", content=body,
                          headers={**V, "Content-Type": content_type, "x-ms-client-request-id": "batch-1"})

    def delete(self, name: str, query: str | None = None, **headers: str) -> tuple[str, str, dict[str, str]]:
        target = f"{self.path}/{name}" + (f"?{query if query is not None else self.query}" if query != "" else "")
        return ("DELETE", target, headers)


def parts(r: httpx.Response) -> list[tuple[str | None, int, str | None]]:
    """(Content-ID, status, x-ms-error-code) of each part of a batch answer."""
    assert r.status_code == 202, r.text
    boundary = r.headers["content-type"].split("boundary=", 1)[1]
    assert boundary.startswith("batchresponse_") and r.headers["x-ms-client-request-id"] == "batch-1"
    chunks = r.text.split(f"--{boundary}")
    assert chunks[0] == "" and chunks[-1] == "--\r\n"
    out = []
    for chunk in chunks[1:-1]:
        cid = re.search(r"^Content-ID: (\S+)", chunk, re.M)
        status = re.search(r"^HTTP/1.1 (\d{3}) ", chunk, re.M)
        code = re.search(r"^x-ms-error-code: (\S+)", chunk, re.M)
        assert status, chunk
        out.append((cid.group(1) if cid else None, int(status.group(1)), code.group(1) if code else None))
    return out


def test_batch_runs_each_subrequest_with_its_own_answer(server: ServerProcess) -> None:
    box = Box(server, "a.csv", "b c.csv", "d.csv", "e.csv", "keep.csv")
    other = Box(server)
    read_only = other.query  # a valid SAS, but of another container
    r = box.batch([box.delete("a.csv"), box.delete("b%20c.csv"), box.delete("missing.csv"),
                   box.delete("d.csv", query=""),  # no SAS of its own: the batch's SAS authorises it
                   box.delete("e.csv", query=read_only),  # a SAS of another container does not
                   box.delete("keep.csv", **{"If-Match": '"0x8D0000000000000"'})])
    assert parts(r) == [("0", 202, None), ("1", 202, None), ("2", 404, "BlobNotFound"), ("3", 202, None),
                        ("4", 403, "AuthenticationFailed"), ("5", 412, "ConditionNotMet")]
    assert box.names() == ["e.csv", "keep.csv"]
    assert "<Code>BlobNotFound</Code>" in r.text and "x-ms-delete-type-permanent: true" in r.text


def test_batch_permissions_come_from_the_subrequests(server: ServerProcess) -> None:
    box = Box(server, "a.csv", "b.csv")
    ro = box.query.replace("sp=racwdl", "sp=rl")  # tampered letters: the signature no longer matches
    r = box.batch([box.delete("a.csv")], query=ro)
    assert (r.status_code, r.headers["x-ms-error-code"]) == (403, "AuthenticationFailed")
    assert "<AuthenticationErrorDetail>" in r.text and box.names() == ["a.csv", "b.csv"]


@pytest.mark.parametrize(("make", "code"), [
    (lambda b: {"subs": [b.delete(f"n{i}.csv") for i in range(257)]}, "ExceedsMaxBatchRequestCount"),
    (lambda b: {"subs": []}, "InvalidInput"),
    (lambda b: {"subs": [b.delete("a.csv"), ("PUT", f"{b.path}/a.csv?{b.query}", {"x-ms-blob-type": "BlockBlob"})]},
     "InvalidInput"),
    (lambda b: {"subs": [b.delete("a.csv"), ("DELETE", f"/chunkd/someone-else/a.csv?{b.query}", {})]},
     "InvalidInput"),
    (lambda b: {"subs": [("DELETE", f"{b.path}?{b.query}", {})]}, "InvalidInput"),
    (lambda b: {"subs": [("DELETE", f"/a.csv?{b.query}", {})]}, "InvalidInput"),
    (lambda b: {"subs": [], "body": b"--batch_b1\r\ngarbage"}, "InvalidInput"),
    (lambda b: {"subs": [], "body": b"--batch_b1\r\n\r\n\r\n--batch_b1--"}, "InvalidInput"),
    (lambda b: {"subs": [b.delete("a.csv")], "content_type": "text/plain"}, "InvalidInput"),
    (lambda b: {"subs": [], "body": b"--batch_b1\r\nContent-Type: application/http\r\n\r\nDELETE\r\n\r\n"
                b"--batch_b1--"}, "InvalidInput"),
])
def test_a_batch_that_cannot_run_as_a_whole_changes_nothing(server: ServerProcess,
                                                             make: Callable[[Box], dict[str, object]],
                                                             code: str) -> None:
    box = Box(server, "a.csv")
    args = make(box)
    subs = args.pop("subs")
    r = box.batch(subs, **args)  # type: ignore[arg-type]
    assert parts(r) == [(None, 400, code)]
    assert box.names() == ["a.csv"]


def test_batch_body_limits_and_alias(server: ServerProcess) -> None:
    box = Box(server, "a.csv")
    r = httpx.post(f"{box.url}?restype=container&comp=batch&{box.query}", content=b"x" * ((4 << 20) + 1),
                   headers={**V, "Content-Type": "multipart/mixed; boundary=b"})
    assert (r.status_code, r.headers["x-ms-error-code"]) == (413, "RequestBodyTooLarge")
    # through the /blob/{account} alias, with subrequests in either layout
    alias = Box(server, "x.csv", "y.csv")
    url = alias.url.replace("/chunkd/", "/blob/chunkd/")
    body = b"".join(f"--B\r\nContent-Type: application/http\r\n\r\nDELETE {p}/{n}?{alias.query} HTTP/1.1\r\n\r\n\r\n"
                    .encode() for p, n in (("/blob" + alias.path, "x.csv"), (alias.path, "y.csv"))) + b"--B--"
    r = httpx.post(f"{url}?restype=container&comp=batch&{alias.query}", content=body,
                   headers={**V, "Content-Type": 'multipart/mixed; boundary="B"', "x-ms-client-request-id": "batch-1"})
    assert parts(r) == [(None, 202, None), (None, 202, None)] and alias.names() == []


def test_cors_preflight_and_exposed_headers(serve: Callable[..., ServerProcess]) -> None:
    server = serve("--no-auth", env={"CHUNKD_CORS_ORIGINS": f"{APP}, http://other.example"})
    box = Box(server)
    blob = f"{box.url}/up.csv"
    pre = httpx.options(blob, headers={"Origin": APP, "Access-Control-Request-Method": "PUT",
                                       "Access-Control-Request-Headers": "x-ms-blob-type,x-ms-version,x-ms-meta-via"})
    assert pre.status_code == 200, pre.text
    assert pre.headers["access-control-allow-origin"] == APP
    assert pre.headers["access-control-allow-methods"] == "PUT"
    assert pre.headers["access-control-allow-headers"] == "x-ms-blob-type,x-ms-version,x-ms-meta-via"
    assert int(pre.headers["access-control-max-age"]) > 0
    # a preflight on the container (Blob Batch, List Blobs) works the same way
    assert httpx.options(box.url, headers={"Origin": APP, "Access-Control-Request-Method": "POST"}).status_code == 200
    for headers, status, code in (
            ({"Origin": "http://evil.example", "Access-Control-Request-Method": "PUT"}, 403, "CorsPreflightFailure"),
            ({"Origin": APP, "Access-Control-Request-Method": "PATCH"}, 403, "CorsPreflightFailure"),
            ({"Origin": APP}, 400, "InvalidHeaderValue"),
            ({"Access-Control-Request-Method": "PUT"}, 400, "InvalidHeaderValue")):
        r = httpx.options(blob, headers=headers)
        assert (r.status_code, r.headers.get("x-ms-error-code")) == (status, code), (headers, r.text)
        assert "access-control-allow-origin" not in r.headers
    put = httpx.put(blob, params=box.sas, headers={**PUT, "Origin": APP, "x-ms-meta-via": "browser"}, content=b"a,b")
    assert put.status_code == 201
    assert put.headers["access-control-allow-origin"] == APP and put.headers["vary"] == "Origin"
    exposed = put.headers["access-control-expose-headers"].split(",")
    assert {"etag", "last-modified", "content-md5", "x-ms-request-id", "x-ms-version"} <= set(exposed)
    got = httpx.get(blob, params=box.sas, headers={"Origin": APP})
    assert "x-ms-meta-via" in got.headers["access-control-expose-headers"].split(",")
    missing = httpx.get(f"{box.url}/nope.csv", params=box.sas, headers={"Origin": APP})
    assert missing.status_code == 404 and "x-ms-error-code" in missing.headers["access-control-expose-headers"]
    evil = httpx.get(blob, params=box.sas, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 200 and "access-control-allow-origin" not in evil.headers


def test_cors_off_refuses_preflights_in_blob_xml(server: ServerProcess) -> None:
    box = Box(server)
    r = httpx.options(f"{box.url}/up.csv", headers={"Origin": APP, "Access-Control-Request-Method": "PUT"})
    assert (r.status_code, r.headers["x-ms-error-code"]) == (403, "CorsPreflightFailure")
    assert "<Code>CorsPreflightFailure</Code>" in r.text
    plain = httpx.get(box.url, params={**box.sas, "restype": "container", "comp": "list"}, headers={"Origin": APP})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
