"""Pure header parsing/formatting of the tus front end and the streaming checksum wrapper."""

from __future__ import annotations

import base64
import hashlib
import zlib

import anyio
import pytest

from chunkd.core.body import Body, ClientGone
from chunkd.core.checksum import ChecksumIncomplete, UnsupportedAlgorithm, verified
from chunkd.core.errors import ChecksumMismatch
from chunkd.protocols._http import external_base
from chunkd.protocols.tus_wire import (
    TusError,
    content_disposition,
    format_metadata,
    parse_checksum,
    parse_concat,
    parse_metadata,
    upload_id_from_url,
)

ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("header", "pairs"), [
    (None, []), ("", []), ("   ", []),
    ("filename YS5wZGY=", [("filename", "YS5wZGY=")]),
    ("a YQ==, flag ,b Yg==", [("a", "YQ=="), ("flag", ""), ("b", "Yg==")]),
])
def test_metadata_accepted(header: str | None, pairs: list[tuple[str, str]]) -> None:
    assert parse_metadata(header) == pairs


@pytest.mark.parametrize("header", ["a YQ==,a Yg==", "a !!", "a YQ== x", "a YQ==,,b Yg==", ",", "a YQ"])
def test_metadata_refused(header: str) -> None:
    with pytest.raises(TusError) as info:
        parse_metadata(header)
    assert (info.value.status, info.value.code) == (400, "ERR_INVALID_METADATA")


def test_metadata_round_trip() -> None:
    header = "filename YS5wZGY=,is_confidential,filetype YXBwbGljYXRpb24vcGRm"
    assert format_metadata(parse_metadata(header)) == header


def test_concat_forms() -> None:
    assert parse_concat(None) == ("", [])
    assert parse_concat("partial") == ("partial", [])
    assert parse_concat(f"final;/files/{ID} http://h:1/files/{ID}/ https://x/y/{ID}") == ("final", [ID] * 3)
    for bad in ("final;", "final", "partial;x", f"final;/files/{ID}x", "other"):
        with pytest.raises(TusError):
            parse_concat(bad)
    assert upload_id_from_url(f"http://h/files/{ID}?x=1") == ID


def test_checksum_header() -> None:
    digest = hashlib.sha1(b"x").digest()
    assert parse_checksum("SHA1 " + base64.b64encode(digest).decode()) == ("sha1", digest)
    with pytest.raises(TusError) as info:
        parse_checksum("sha3-256 AAAA")
    assert info.value.code == "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"
    for bad in ("sha1", "sha1 ", "sha1 *&^"):
        with pytest.raises(TusError):
            parse_checksum(bad)


@pytest.mark.parametrize(("headers", "trust", "want"), [
    ({"x-forwarded-host": "up.example", "x-forwarded-proto": "https"}, True, "https://up.example"),
    ({"x-forwarded-host": "up.example", "x-forwarded-proto": "https"}, False, "http://127.0.0.1:9"),
    ({"forwarded": 'for=1.2.3.4;host="a.example";proto=https, host=b.example'}, True, "https://a.example"),
    ({"forwarded": "proto=gopher"}, True, "http://127.0.0.1:9"),
    ({"x-forwarded-host": "a.example, b.example"}, True, "http://a.example"),
])
def test_external_base(headers: dict[str, str], trust: bool, want: str) -> None:
    assert external_base(headers, "http", "127.0.0.1:9", trust) == want


async def _pieces(*chunks: bytes, gone: bool = False) -> Body:
    for c in chunks:
        yield c
    if gone:
        raise ClientGone()


async def _drain(body: Body) -> bytes:
    return b"".join([p async for p in body])


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512", "md5", "crc32"])
def test_verified_body(algorithm: str) -> None:
    data = b"hello world"
    digest = zlib.crc32(data).to_bytes(4, "big") if algorithm == "crc32" else hashlib.new(algorithm, data).digest()
    assert anyio.run(_drain, verified(_pieces(b"hello", b" world"), algorithm, digest)) == data
    with pytest.raises(ChecksumMismatch):
        anyio.run(_drain, verified(_pieces(b"hello", b" wOrld"), algorithm, digest))
    with pytest.raises(ChecksumIncomplete):  # a cut-short body cannot be verified: nothing may be kept
        anyio.run(_drain, verified(_pieces(b"hello", gone=True), algorithm, digest))


def test_verified_refuses_unknown_algorithm() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        verified(_pieces(b""), "whirlpool", b"x")


@pytest.mark.parametrize(("name", "header"), [
    ("", "attachment"), ("a.pdf", 'attachment; filename="a.pdf"'), ('x"y\\z/w.txt', 'attachment; filename="xyzw.txt"'),
    ("résumé.pdf", "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"), ("\r\n", "attachment"),
])
def test_content_disposition(name: str, header: str) -> None:
    assert content_disposition(name) == header
