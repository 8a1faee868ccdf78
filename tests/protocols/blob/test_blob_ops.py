"""The container endpoint operation by operation, with raw HTTP against a real server."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from chunkd.protocols._blob_wire import crc64, crc64_header
from tests.protocols.industry_data.helpers import new_session_url, split_sas, start_server
from tests.serverproc import ServerProcess

V = {"x-ms-version": "2026-10-06"}
PUT = {**V, "x-ms-blob-type": "BlockBlob"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory, "--no-auth")


class Box:
    """A fresh container: ``req(method, blob, **params)`` sends with the SAS appended."""

    def __init__(self, server: ServerProcess) -> None:
        self.url, self.sas = split_sas(new_session_url(server.url))

    def req(self, method: str, blob: str = "", *, headers: dict[str, str] | None = None, content: bytes | None = None,
            **params: str) -> httpx.Response:
        url = f"{self.url}/{blob}" if blob else self.url
        return httpx.request(method, url, params={**self.sas, **params}, headers={**V, **(headers or {})},
                             content=content)

    def put(self, blob: str, data: bytes, **headers: str) -> httpx.Response:
        return self.req("PUT", blob, headers={**PUT, **headers}, content=data)

    def names(self, **params: str) -> tuple[list[str], list[str], str]:
        r = self.req("GET", restype="container", comp="list", **params)
        assert r.status_code == 200, r.text
        blobs = re.findall(r"<Blob><Name>([^<]*)</Name>", r.text)
        prefixes = re.findall(r"<BlobPrefix><Name>([^<]*)</Name>", r.text)
        marker = re.search(r"<NextMarker>([^<]*)</NextMarker>", r.text)
        return blobs, prefixes, marker.group(1) if marker else ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _code(r: httpx.Response) -> tuple[int, Any]:
    return r.status_code, r.headers.get("x-ms-error-code")


def test_put_blob_properties_and_read_back(server: ServerProcess) -> None:
    box = Box(server)
    data = b"sourcedId,name\n1,North High\n"
    r = box.put("orgs.csv", data, **{"x-ms-blob-content-type": "text/csv", "x-ms-meta-uploadvia": "PortalUpload",
                                     "Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Content-MD5"] == _b64(hashlib.md5(data).digest())
    assert r.headers["ETag"].startswith('"0x') and "Last-Modified" in r.headers
    assert r.headers["x-ms-request-id"] and r.headers["x-ms-version"] == "2026-10-06"
    h = box.req("HEAD", "orgs.csv")
    assert h.status_code == 200
    assert (h.headers["Content-Length"], h.headers["Content-Type"]) == (str(len(data)), "text/csv")
    assert h.headers["x-ms-meta-uploadvia"] == "PortalUpload" and h.headers["x-ms-blob-type"] == "BlockBlob"
    assert h.headers["ETag"] == r.headers["ETag"]
    g = box.req("GET", "orgs.csv")
    assert g.content == data and g.headers["Content-MD5"] == r.headers["Content-MD5"]
    part = box.req("GET", "orgs.csv", headers={"x-ms-range": "bytes=10-14", "Range": "bytes=0-1"})
    assert (part.status_code, part.content, part.headers["Content-Range"]) == (206, data[10:15],
                                                                                f"bytes 10-14/{len(data)}")
    assert _code(box.req("GET", "orgs.csv", headers={"Range": f"bytes={len(data)}-"})) == (416, "InvalidRange")
    assert box.req("GET", "orgs.csv", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    assert _code(box.req("GET", "orgs.csv", headers={"If-Match": '"0x1"'})) == (412, "ConditionNotMet")


def test_bad_puts_change_nothing(server: ServerProcess) -> None:
    box = Box(server)
    data = b"a,b\n1,2\n"
    assert box.put("keep.csv", data).status_code == 201
    etag = box.req("HEAD", "keep.csv").headers["ETag"]
    bad = [
        (box.put("keep.csv", b"x,y\n", **{"Content-MD5": _b64(hashlib.md5(b"other").digest())}), 400, "Md5Mismatch"),
        (box.put("keep.csv", b"x,y\n", **{"x-ms-content-crc64": crc64_header(crc64(b"other"))}), 400,
         "Crc64Mismatch"),
        (box.put("keep.csv", b"x,y\n", **{"If-None-Match": "*"}), 409, "BlobAlreadyExists"),
        (box.put("keep.csv", b"x,y\n", **{"If-Match": '"0x8D0000000000000"'}), 412, "ConditionNotMet"),
        (box.req("PUT", "keep.csv", headers=V, content=b"x"), 400, "MissingRequiredHeader"),
        (box.put("keep.csv", b"x", **{"x-ms-blob-type": "PageBlob"}), 400, "InvalidHeaderValue"),
        (box.put("keep.csv", b"x", **{"x-ms-version": "yesterday"}), 400, "InvalidHeaderValue"),
        (box.put("keep.csv", b"x", **{"Content-MD5": "not-base64"}), 400, "InvalidHeaderValue"),
    ]
    for r, status, code in bad:
        assert _code(r) == (status, code), r.text
        assert f"<Code>{code}</Code>" in r.text and "RequestId:" in r.text
    assert box.req("GET", "keep.csv").content == data
    assert box.req("HEAD", "keep.csv").headers["ETag"] == etag
    assert box.names()[0] == ["keep.csv"]
    # correct checksums are accepted; a missing Content-Length is 411
    ok = box.put("crc.csv", b"x,y\n", **{"x-ms-content-crc64": crc64_header(crc64(b"x,y\n")),
                                         "Content-MD5": _b64(hashlib.md5(b"x,y\n").digest())})
    assert ok.status_code == 201 and ok.headers["x-ms-content-crc64"] == crc64_header(crc64(b"x,y\n"))

    def chunked() -> Iterator[bytes]:
        yield b"abc"

    r = httpx.put(f"{box.url}/chunked.csv", params=box.sas, headers=PUT, content=chunked())
    assert _code(r) == (411, "MissingContentLengthHeader")


def test_crc64_is_the_nvme_polynomial() -> None:
    assert crc64(b"123456789") == 0xAE8B14860A799888
    assert crc64(b"6789", crc64(b"12345")) == crc64(b"123456789")


def test_blocks_stage_list_commit_and_reuse(server: ServerProcess) -> None:
    box = Box(server)
    ids = [_b64(f"block-{i:03d}".encode()) for i in range(3)]
    chunks = [b"A" * 1000, b"B" * 10, b"C" * 7]
    for bid, chunk in zip(ids, chunks, strict=True):
        r = box.req("PUT", "big.bin", comp="block", blockid=bid, content=chunk,
                    headers={"Content-MD5": _b64(hashlib.md5(chunk).digest())})
        assert r.status_code == 201, r.text
    assert _code(box.req("HEAD", "big.bin")) == (404, "BlobNotFound")
    assert box.names()[0] == [] and box.names(include="uncommittedblobs")[0] == ["big.bin"]
    r = box.req("GET", "big.bin", comp="blocklist", blocklisttype="all")
    assert r.status_code == 200 and r.text.count("<Block>") == 3 and "<CommittedBlocks></CommittedBlocks>" in r.text
    # unknown id, mixed id lengths, corrupted block: refused, nothing changes
    bad_list = f"<?xml version='1.0' encoding='utf-8'?><BlockList><Latest>{_b64(b'block-999')}</Latest></BlockList>"
    assert _code(box.req("PUT", "big.bin", comp="blocklist", content=bad_list.encode())) == (400, "InvalidBlockList")
    assert _code(box.req("PUT", "big.bin", comp="block", blockid=_b64(b"short"), content=b"x")) == \
        (400, "InvalidBlobOrBlock")
    assert _code(box.req("PUT", "big.bin", comp="block", blockid="!!", content=b"x")) == \
        (400, "InvalidQueryParameterValue")
    r = box.req("PUT", "big.bin", comp="block", blockid=ids[0], content=b"Z" * 1000,
                headers={"Content-MD5": _b64(hashlib.md5(b"other").digest())})
    assert _code(r) == (400, "Md5Mismatch")
    # staging an id again replaces its bytes
    chunks[2] = b"D" * 7
    assert box.req("PUT", "big.bin", comp="block", blockid=ids[2], content=chunks[2]).status_code == 201
    assert box.req("GET", "big.bin", comp="blocklist", blocklisttype="uncommitted").text.count("<Block>") == 3
    # commit in a different order than staged, leaving one block out
    body = ("<?xml version='1.0' encoding='utf-8'?><BlockList>"
            f"<Latest>{ids[2]}</Latest><Uncommitted>{ids[0]}</Uncommitted></BlockList>").encode()
    r = box.req("PUT", "big.bin", comp="blocklist", content=body, headers={"x-ms-blob-content-type": "text/plain"})
    assert r.status_code == 201, r.text
    got = box.req("GET", "big.bin")
    assert got.content == chunks[2] + chunks[0] and got.headers["Content-Type"] == "text/plain"
    r = box.req("GET", "big.bin", comp="blocklist", blocklisttype="all")
    assert re.findall(r"<Name>([^<]*)</Name>", r.text) == [ids[2], ids[0]]  # the unlisted block is gone
    assert r.headers["x-ms-blob-content-length"] == "1007"
    # a committed block listed again (twice) plus a new one: the blob is rebuilt from them
    new = _b64(b"block-777")
    assert box.req("PUT", "big.bin", comp="block", blockid=new, content=b"N" * 5).status_code == 201
    body = (f"<BlockList><Committed>{ids[0]}</Committed><Latest>{new}</Latest>"
            f"<Committed>{ids[0]}</Committed></BlockList>").encode()
    assert box.req("PUT", "big.bin", comp="blocklist", content=body).status_code == 201
    assert box.req("GET", "big.bin").content == chunks[0] + b"N" * 5 + chunks[0]
    assert _code(box.req("PUT", "big.bin", comp="blocklist", content=b"<BlockList><Latest>")) == \
        (400, "InvalidXmlDocument")
    # If-None-Match: * on Put Block List of an existing blob
    assert box.req("PUT", "x.bin", comp="block", blockid=new, content=b"q").status_code == 201
    r = box.req("PUT", "big.bin", comp="blocklist", content=f"<BlockList><Latest>{new}</Latest></BlockList>".encode(),
                headers={"If-None-Match": "*"})
    assert _code(r) == (409, "BlobAlreadyExists")


def test_list_prefix_delimiter_marker_and_delete(server: ServerProcess) -> None:
    box = Box(server)
    names = ["a.csv", "b/1.csv", "b/2.csv", "b/c/3.csv", "c.csv", "d/4.csv"]
    for n in names:
        assert box.put(n, n.encode()).status_code == 201
    assert box.names() == (names, [], "")
    assert box.names(delimiter="/") == (["a.csv", "c.csv"], ["b/", "d/"], "")
    assert box.names(prefix="b/", delimiter="/") == (["b/1.csv", "b/2.csv"], ["b/c/"], "")
    page, _, marker = box.names(maxresults="2")
    assert page == names[:2] and marker
    seen = page
    while marker:
        page, _, marker = box.names(maxresults="2", marker=marker)
        seen += page
    assert seen == names
    blobs, prefixes, marker = box.names(delimiter="/", maxresults="2")
    assert (blobs, prefixes) == (["a.csv"], ["b/"]) and marker
    assert box.names(delimiter="/", maxresults="2", marker=marker)[:2] == (["c.csv"], ["d/"])
    assert _code(box.req("GET", restype="container", comp="list", maxresults="0")) == \
        (400, "OutOfRangeQueryParameterValue")
    r = box.req("DELETE", "b/2.csv")
    assert r.status_code == 202 and r.headers["x-ms-delete-type-permanent"] == "true"
    assert _code(box.req("DELETE", "b/2.csv")) == (404, "BlobNotFound")
    h = box.req("HEAD", "b/2.csv")
    assert _code(h) == (404, "BlobNotFound") and h.content == b""
    assert box.names(prefix="b/")[0] == ["b/1.csv", "b/c/3.csv"]
    assert _code(box.req("GET", restype="container")) == (403, "AuthorizationPermissionMismatch")  # as Azure


def test_newer_and_missing_versions_are_accepted(server: ServerProcess) -> None:
    box = Box(server)
    r = httpx.put(f"{box.url}/v.csv", params=box.sas, headers={"x-ms-blob-type": "BlockBlob",
                                                                "x-ms-version": "2031-01-01"}, content=b"v")
    assert r.status_code == 201
    r = httpx.get(f"{box.url}/v.csv", params=box.sas)
    assert r.status_code == 200 and r.content == b"v"


def test_odd_names_empty_blocks_and_refusals(server: ServerProcess) -> None:
    box = Box(server)
    for name in ("a b/\u00fc ber.csv", "x", "x/y", "deep/" * 20 + "f.csv", "plus+and=.csv"):
        assert box.put(name, name.encode()).status_code == 201, name
        assert box.req("GET", name).content == name.encode()
    assert sorted(box.names()[0]) == sorted(["a b/\u00fc ber.csv", "x", "x/y", "deep/" * 20 + "f.csv",
                                             "plus+and=.csv"])
    assert _code(box.put("n" * 1025, b"x")) == (400, "InvalidResourceName")
    assert _code(box.put("m.csv", b"x", **{"x-ms-meta-1bad": "v"})) == (400, "InvalidMetadata")
    assert _code(box.req("POST", "m.csv", content=b"x")) == (405, "UnsupportedHttpVerb")
    assert _code(box.req("PUT", "m.csv", comp="appendblock", content=b"x")) == (400, "UnsupportedQueryParameter")
    assert _code(box.req("HEAD", "m.csv")) == (404, "BlobNotFound")
    # a zero-length block and an empty block list
    assert box.req("PUT", "z.bin", comp="block", blockid=_b64(b"0"), content=b"").status_code == 201
    assert box.req("PUT", "z.bin", comp="blocklist", content=f"<BlockList><Latest>{_b64(b'0')}</Latest></BlockList>"
                   .encode()).status_code == 201
    assert box.req("GET", "z.bin").content == b""
    assert box.req("PUT", "e.bin", comp="blocklist", content=b"<BlockList/>").status_code == 201
    assert box.req("HEAD", "e.bin").headers["Content-Length"] == "0"
    # a raw '+' in blockid (not percent-encoded) means '+', not a space
    raw = base64.b64encode(b"\xfb\xef\xbe").decode()  # '++++'
    r = httpx.put(f"{box.url}/plus.bin?{urlencode(box.sas)}&comp=block&blockid={raw}", content=b"p", headers=V)
    assert r.status_code == 201, r.text
    assert raw in box.req("GET", "plus.bin", comp="blocklist", blocklisttype="all").text
