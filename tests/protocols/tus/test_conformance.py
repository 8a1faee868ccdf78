"""Protocol conformance table, one block per verb in the style of tusd's handler tests.

Each case: a starting state, one request, the expected status, headers (value, ``PRESENT`` or ``ABSENT``),
the start of the plain-text body, and the upload's offset afterwards (bad input must change nothing).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass, field

import httpx
import pytest

from tests.protocols.tus.conftest import MAX_SIZE, OCTETS, TUS, Create, offset_of, patch

PRESENT, ABSENT = object(), object()
DATA = b"0123456789"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def digest(algo: str, data: bytes) -> str:
    if algo == "crc32":
        return b64(zlib.crc32(data).to_bytes(4, "big"))
    return b64(hashlib.new(algo, data).digest())


@dataclass
class Case:
    id: str
    state: str  # none | fresh | half | deferred | complete | final | terminated | unknown | badid
    method: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    status: int = 204
    expect: dict[str, object] = field(default_factory=dict)
    text: str = ""  # expected start of the error body
    offset_after: int | None = None  # HEAD offset after the request
    tus: bool = True  # send Tus-Resumable: 1.0.0


def P(**h: str) -> dict[str, str]:
    return {k.replace("_", "-"): v for k, v in h.items()}


PATCH_OK = P(Content_Type=OCTETS, Upload_Offset="0")

CASES = [
    # -- OPTIONS
    Case("options", "none", "OPTIONS", tus=False, status=204,
         expect={"Tus-Version": "1.0.0", "Tus-Max-Size": str(MAX_SIZE), "Tus-Resumable": "1.0.0",
                 "Tus-Extension": "creation,creation-with-upload,creation-defer-length,expiration,checksum,"
                                  "termination,concatenation,concatenation-unfinished",
                 "Tus-Checksum-Algorithm": "sha1,sha256,sha512,md5,crc32"}),
    Case("options-upload-url", "fresh", "OPTIONS", tus=False, status=204, expect={"Tus-Version": "1.0.0"}),
    # -- POST (creation)
    Case("post-no-version", "none", "POST", P(Upload_Length="10"), tus=False, status=412,
         expect={"Tus-Version": "1.0.0", "Location": ABSENT}, text="ERR_UNSUPPORTED_VERSION"),
    Case("post-wrong-version", "none", "POST", P(Upload_Length="10", Tus_Resumable="0.2.2"), status=412,
         expect={"Tus-Version": "1.0.0"}, text="ERR_UNSUPPORTED_VERSION"),
    Case("post", "none", "POST", P(Upload_Length="10"), status=201,
         expect={"Location": PRESENT, "Upload-Expires": PRESENT, "Tus-Resumable": "1.0.0", "Upload-Offset": "0"}),
    Case("post-no-length", "none", "POST", status=400, text="ERR_INVALID_UPLOAD_LENGTH"),
    Case("post-length-and-defer", "none", "POST", P(Upload_Length="10", Upload_Defer_Length="1"), status=400,
         text="ERR_AMBIGUOUS_UPLOAD_LENGTH"),
    Case("post-defer-2", "none", "POST", P(Upload_Defer_Length="2"), status=400,
         text="ERR_INVALID_UPLOAD_LENGTH_DEFER"),
    Case("post-defer", "none", "POST", P(Upload_Defer_Length="1"), status=201, expect={"Location": PRESENT}),
    Case("post-negative-length", "none", "POST", P(Upload_Length="-1"), status=400, text="ERR_INVALID_UPLOAD_LENGTH"),
    Case("post-text-length", "none", "POST", P(Upload_Length="ten"), status=400, text="ERR_INVALID_UPLOAD_LENGTH"),
    Case("post-over-max-size", "none", "POST", P(Upload_Length=str(MAX_SIZE + 1)), status=413,
         text="ERR_MAX_SIZE_EXCEEDED"),
    Case("post-max-size", "none", "POST", P(Upload_Length=str(MAX_SIZE)), status=201),
    Case("post-empty-metadata", "none", "POST", P(Upload_Length="10", Upload_Metadata=""), status=201),
    Case("post-metadata", "none", "POST", P(Upload_Length="10", Upload_Metadata=f"filename {b64(b'a.pdf')},flag"),
         status=201),
    Case("post-metadata-not-base64", "none", "POST", P(Upload_Length="10", Upload_Metadata="filename a.pdf!"),
         status=400, text="ERR_INVALID_METADATA"),
    Case("post-metadata-three-parts", "none", "POST", P(Upload_Length="10", Upload_Metadata="a YQ== YQ=="),
         status=400, text="ERR_INVALID_METADATA"),
    Case("post-metadata-duplicate-key", "none", "POST", P(Upload_Length="10", Upload_Metadata="a YQ==,a Yg=="),
         status=400, text="ERR_INVALID_METADATA"),
    Case("post-metadata-empty-pair", "none", "POST", P(Upload_Length="10", Upload_Metadata="a YQ==,,b Yg=="),
         status=400, text="ERR_INVALID_METADATA"),
    Case("post-with-upload", "none", "POST", P(Upload_Length="10", Content_Type=OCTETS), body=b"01234",
         status=201, expect={"Upload-Offset": "5", "Location": PRESENT}),
    Case("post-with-upload-too-long", "none", "POST", P(Upload_Length="3", Content_Type=OCTETS), body=b"01234",
         status=413, text="ERR_UPLOAD_SIZE_EXCEEDED"),
    Case("post-with-upload-bad-checksum", "none", "POST",
         P(Upload_Length="10", Content_Type=OCTETS, Upload_Checksum=f"sha1 {digest('sha1', b'x')}"), body=b"01234",
         status=201, expect={"Upload-Offset": "0"}),
    Case("post-bad-concat", "none", "POST", P(Upload_Length="10", Upload_Concat="both"), status=400,
         text="ERR_INVALID_CONCAT"),
    Case("post-final-with-length", "none", "POST",
         P(Upload_Length="10", Upload_Concat="final;/files/" + "a" * 32), status=400, text="ERR_INVALID_CONCAT"),
    Case("post-final-bad-url", "none", "POST", P(Upload_Concat="final;/files/nope"), status=400,
         text="ERR_INVALID_CONCAT"),
    Case("post-final-unknown-part", "none", "POST", P(Upload_Concat="final;/files/" + "a" * 32), status=404,
         text="ERR_UPLOAD_NOT_FOUND"),
    Case("post-on-upload-url", "fresh", "POST", P(Upload_Length="10"), status=405, offset_after=0),
    # -- HEAD
    Case("head", "half", "HEAD", status=200,
         expect={"Upload-Offset": "5", "Upload-Length": "10", "Cache-Control": "no-store",
                 "Upload-Expires": PRESENT, "Upload-Defer-Length": ABSENT, "Tus-Resumable": "1.0.0"}),
    Case("head-deferred", "deferred", "HEAD", status=200,
         expect={"Upload-Offset": "0", "Upload-Defer-Length": "1", "Upload-Length": ABSENT}),
    Case("head-complete", "complete", "HEAD", status=200,
         expect={"Upload-Offset": "10", "Upload-Length": "10", "Upload-Expires": ABSENT}),
    Case("head-no-version", "fresh", "HEAD", tus=False, status=412, expect={"Upload-Offset": ABSENT}),
    Case("head-unknown", "unknown", "HEAD", status=404, expect={"Upload-Offset": ABSENT}),
    Case("head-malformed-id", "badid", "HEAD", status=404, expect={"Upload-Offset": ABSENT}),
    Case("head-terminated", "terminated", "HEAD", status=410, expect={"Upload-Offset": ABSENT}),
    Case("head-final", "final", "HEAD", status=200,
         expect={"Upload-Offset": "10", "Upload-Length": "10", "Upload-Concat": PRESENT}),
    # -- PATCH
    Case("patch", "fresh", "PATCH", PATCH_OK, DATA[:4], status=204,
         expect={"Upload-Offset": "4", "Upload-Expires": PRESENT, "Tus-Resumable": "1.0.0"}, offset_after=4),
    Case("patch-completes", "half", "PATCH", P(Content_Type=OCTETS, Upload_Offset="5"), DATA[5:], status=204,
         expect={"Upload-Offset": "10", "Upload-Expires": ABSENT}, offset_after=10),
    Case("patch-empty-on-complete", "complete", "PATCH", P(Content_Type=OCTETS, Upload_Offset="10"), status=204,
         expect={"Upload-Offset": "10"}, offset_after=10),
    Case("patch-after-complete", "complete", "PATCH", P(Content_Type=OCTETS, Upload_Offset="10"), b"x", status=413,
         text="ERR_UPLOAD_SIZE_EXCEEDED", offset_after=10),
    Case("patch-no-version", "fresh", "PATCH", PATCH_OK, DATA, tus=False, status=412, offset_after=0),
    Case("patch-wrong-content-type", "fresh", "PATCH", P(Content_Type="application/octet-stream", Upload_Offset="0"),
         DATA, status=415, text="ERR_INVALID_CONTENT_TYPE", offset_after=0),
    Case("patch-no-content-type", "fresh", "PATCH", P(Upload_Offset="0"), DATA, status=415, offset_after=0),
    Case("patch-no-offset", "fresh", "PATCH", P(Content_Type=OCTETS), DATA, status=400, text="ERR_INVALID_OFFSET",
         offset_after=0),
    Case("patch-negative-offset", "fresh", "PATCH", P(Content_Type=OCTETS, Upload_Offset="-1"), DATA, status=400,
         text="ERR_INVALID_OFFSET", offset_after=0),
    Case("patch-offset-behind", "half", "PATCH", PATCH_OK, DATA, status=409, expect={"Upload-Offset": "5"},
         text="ERR_MISMATCHED_OFFSET", offset_after=5),
    Case("patch-offset-ahead", "half", "PATCH", P(Content_Type=OCTETS, Upload_Offset="7"), b"789", status=409,
         expect={"Upload-Offset": "5"}, offset_after=5),
    Case("patch-beyond-length", "half", "PATCH", P(Content_Type=OCTETS, Upload_Offset="5"), DATA, status=413,
         text="ERR_UPLOAD_SIZE_EXCEEDED", offset_after=5),
    Case("patch-unknown", "unknown", "PATCH", PATCH_OK, DATA, status=404, expect={"Upload-Offset": ABSENT},
         text="ERR_UPLOAD_NOT_FOUND"),
    Case("patch-terminated", "terminated", "PATCH", PATCH_OK, DATA, status=410, text="ERR_UPLOAD_GONE"),
    Case("patch-final", "final", "PATCH", P(Content_Type=OCTETS, Upload_Offset="10"), b"x", status=403,
         text="ERR_MODIFY_FINAL"),
    *[Case(f"patch-checksum-{a}", "fresh", "PATCH", {**PATCH_OK, "Upload-Checksum": f"{a} {digest(a, DATA)}"}, DATA,
           status=204, expect={"Upload-Offset": "10"}, offset_after=10) for a in ("sha1", "sha256", "md5", "crc32")],
    Case("patch-checksum-mismatch", "fresh", "PATCH", {**PATCH_OK, "Upload-Checksum": f"sha1 {digest('sha1', b'x')}"},
         DATA, status=460, text="ERR_CHECKSUM_MISMATCH", offset_after=0),
    Case("patch-checksum-mismatch-crc32", "half", "PATCH",
         P(Content_Type=OCTETS, Upload_Offset="5", Upload_Checksum=f"crc32 {digest('crc32', b'56788')}"), DATA[5:],
         status=460, offset_after=5),
    Case("patch-checksum-unsupported", "fresh", "PATCH", {**PATCH_OK, "Upload-Checksum": "sha3 AAAA"}, DATA,
         status=400, text="ERR_UNSUPPORTED_CHECKSUM_ALGORITHM", offset_after=0),
    Case("patch-checksum-not-base64", "fresh", "PATCH", {**PATCH_OK, "Upload-Checksum": "sha1 !!"}, DATA,
         status=400, text="ERR_INVALID_CHECKSUM", offset_after=0),
    Case("patch-deferred-sets-length", "deferred", "PATCH", {**PATCH_OK, "Upload-Length": "10"}, DATA[:3], status=204,
         expect={"Upload-Offset": "3"}, offset_after=3),
    Case("patch-deferred-length-too-big", "deferred", "PATCH", {**PATCH_OK, "Upload-Length": str(MAX_SIZE + 1)},
         DATA, status=413, offset_after=0),
    Case("patch-length-changes", "half", "PATCH", P(Content_Type=OCTETS, Upload_Offset="5", Upload_Length="11"),
         DATA[5:], status=400, text="ERR_INVALID_UPLOAD_LENGTH", offset_after=5),
    Case("patch-via-method-override", "fresh", "POST", {**PATCH_OK, "X-HTTP-Method-Override": "PATCH"}, DATA,
         status=204, expect={"Upload-Offset": "10"}, offset_after=10),
    Case("patch-on-collection", "none", "PATCH", PATCH_OK, DATA, status=405),
    # -- DELETE (termination)
    Case("delete", "half", "DELETE", status=204, expect={"Tus-Resumable": "1.0.0"}),
    Case("delete-complete", "complete", "DELETE", status=204),
    Case("delete-via-method-override", "half", "POST", P(X_HTTP_Method_Override="DELETE"), status=204),
    Case("delete-unknown", "unknown", "DELETE", status=404),
    Case("delete-twice", "terminated", "DELETE", status=410),
    Case("delete-no-version", "half", "DELETE", tus=False, status=412, offset_after=5),
    # -- GET (download of a finished upload)
    Case("get-unfinished", "half", "GET", status=400, text="ERR_UPLOAD_NOT_FINISHED", offset_after=5),
    Case("get-unknown", "unknown", "GET", status=404),
    Case("get-range", "complete", "GET", P(Range="bytes=2-4"), status=206, expect={"Content-Range": "bytes 2-4/10"}),
]


def prepare(client: httpx.Client, create: Create, state: str) -> str:
    if state == "none":
        return "/files/"
    if state == "unknown":
        return "/files/" + "f" * 32
    if state == "badid":
        return "/files/Not-An-Upload-Id"
    if state == "deferred":
        return create(None, {"Upload-Defer-Length": "1"})
    path = create(10)
    if state in ("half", "complete"):
        data = DATA[:5] if state == "half" else DATA
        assert patch(client, path, 0, data).status_code == 204
    elif state == "terminated":
        assert client.delete(path, headers=TUS).status_code == 204
    elif state == "final":
        a, b = create(4, {"Upload-Concat": "partial"}), create(6, {"Upload-Concat": "partial"})
        assert patch(client, a, 0, DATA[:4]).status_code == 204
        assert patch(client, b, 0, DATA[4:]).status_code == 204
        r = client.post("/files/", headers={**TUS, "Upload-Concat": f"final;{a} {b}"})
        assert r.status_code == 201, r.text
        path = httpx.URL(r.headers["location"]).path
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_exchange(client: httpx.Client, create: Create, case: Case) -> None:
    path = prepare(client, create, case.state)
    headers = {**(TUS if case.tus else {}), **case.headers}
    r = client.request(case.method, path, headers=headers, content=case.body or None)
    assert r.status_code == case.status, r.text
    for name, want in case.expect.items():
        if want is PRESENT:
            assert name.lower() in r.headers, name
        elif want is ABSENT:
            assert name.lower() not in r.headers, name
        else:
            assert r.headers.get(name) == want, (name, r.headers.get(name))
    if case.text:
        assert r.text.startswith(case.text + ": "), r.text
        assert r.headers["content-type"].startswith("text/plain")
    if r.status_code >= 400:
        assert r.headers.get("tus-resumable") == "1.0.0"
    if case.offset_after is not None:
        assert offset_of(client, path) == case.offset_after


def test_metadata_is_echoed(client: httpx.Client, create: Create) -> None:
    meta = f"filename {b64('résumé.pdf'.encode())},filetype {b64(b'application/pdf')},is_confidential"
    path = create(3, {"Upload-Metadata": meta})
    assert client.head(path, headers=TUS).headers["upload-metadata"] == meta
    assert patch(client, path, 0, b"pdf").status_code == 204
    r = client.get(path)
    assert r.content == b"pdf"
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"


def test_html_filetype_is_not_served_as_html(client: httpx.Client, create: Create) -> None:
    path = create(3, {"Upload-Metadata": f"filetype {b64(b'text/html')}"})
    patch(client, path, 0, b"<b>")
    r = client.get(path)
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_empty_upload_is_complete_at_creation(client: httpx.Client, create: Create) -> None:
    path = create(0)
    r = client.head(path, headers=TUS)
    assert (r.headers["upload-offset"], r.headers["upload-length"]) == ("0", "0")
    got = client.get(path)
    assert got.status_code == 200 and got.content == b""


def test_creation_with_whole_upload_is_downloadable(client: httpx.Client, create: Create) -> None:
    path = create(10, body=DATA)
    assert client.get(path).content == DATA


def test_deferred_length_then_complete(client: httpx.Client, create: Create) -> None:
    path = create(None, {"Upload-Defer-Length": "1"})
    assert patch(client, path, 0, DATA[:4]).status_code == 204
    r = patch(client, path, 4, DATA[4:], Upload_Length="10")
    assert r.status_code == 204 and r.headers["upload-offset"] == "10"
    head = client.head(path, headers=TUS)
    assert head.headers["upload-length"] == "10" and "upload-defer-length" not in head.headers
    assert client.get(path).content == DATA


def test_deferred_length_set_by_empty_patch(client: httpx.Client, create: Create) -> None:
    path = create(None, {"Upload-Defer-Length": "1"})
    assert patch(client, path, 0, DATA).status_code == 204
    assert client.get(path).status_code == 400  # length still unknown: not finished
    r = patch(client, path, 10, b"", Upload_Length="10")
    assert r.status_code == 204
    assert client.get(path).content == DATA


def test_chunked_patch_without_content_length(client: httpx.Client, create: Create) -> None:
    path = create(10)

    def pieces():  # type: ignore[no-untyped-def]
        yield DATA[:3]
        yield DATA[3:]

    r = client.patch(path, headers={**TUS, "Content-Type": OCTETS, "Upload-Offset": "0"}, content=pieces())
    assert r.status_code == 204 and r.headers["upload-offset"] == "10"
    assert client.get(path).content == DATA


def test_chunked_patch_with_bad_checksum_keeps_nothing(client: httpx.Client, create: Create) -> None:
    path = create(10)

    def pieces():  # type: ignore[no-untyped-def]
        yield DATA[:3]
        yield DATA[3:]

    r = client.patch(path, headers={**TUS, "Content-Type": OCTETS, "Upload-Offset": "0",
                                    "Upload-Checksum": f"md5 {digest('md5', b'nope')}"}, content=pieces())
    assert r.status_code == 460
    assert offset_of(client, path) == 0


def test_deferred_upload_cannot_grow_beyond_max_size(server, client: httpx.Client, create: Create) -> None:  # type: ignore[no-untyped-def]
    import socket

    path = create(None, {"Upload-Defer-Length": "1"})
    assert patch(client, path, 0, DATA).status_code == 204
    with socket.create_connection(("127.0.0.1", server.port)) as sock:  # declare the body, never send it
        sock.sendall((f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OCTETS}\r\n"
                      f"Upload-Offset: 10\r\nContent-Length: {MAX_SIZE - 9}\r\n\r\n").encode())
        assert sock.recv(65536).split(b"\r\n", 1)[0] == b"HTTP/1.1 413 Request Entity Too Large"
    assert offset_of(client, path) == 10


def test_chunked_body_of_deferred_upload_is_capped(client: httpx.Client, create: Create) -> None:
    path = create(None, {"Upload-Defer-Length": "1"})

    def pieces():  # type: ignore[no-untyped-def]
        for _ in range(9):
            yield b"z" * (1 << 20)

    r = client.patch(path, headers={**TUS, "Content-Type": OCTETS, "Upload-Offset": "0"}, content=pieces())
    assert r.status_code == 413
    assert offset_of(client, path) == 0
