"""Differential test: one sequence of azure-storage-blob calls against Azurite 3.35.0 and against chunkd's
container endpoint (through an Industry Data sessionUrl, the same /{account}/{container} layout); status codes,
error codes, listings and bytes must agree, except for the differences listed in KNOWN_DIFFERENCES (each
explained in docs/blob.md)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient, ContentSettings, generate_container_sas

from chunkd.auth.sas import load_or_create_account_key
from tests.protocols.industry_data.helpers import new_session_url, split_sas, start_server
from tests.serverproc import ServerProcess, free_port

AZURITE = Path(__file__).parent / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# step -> (Azurite's outcome, chunkd's outcome): deliberate, documented differences
KNOWN_DIFFERENCES: dict[str, tuple[Any, Any]] = {
    # Azurite answers every signature problem with AuthorizationFailure; Azure (and chunkd) say AuthenticationFailed
    "tampered_sig": (("error", 403, "AuthorizationFailure"), ("error", 403, "AuthenticationFailed")),
    # Azurite reports a Content-MD5 mismatch as InvalidOperation; Azure documents Md5Mismatch, which chunkd uses
    "stage_bad_md5": (("error", 400, "InvalidOperation"), ("error", 400, "Md5Mismatch")),
    "bad_md5": (("error", 400, "InvalidOperation"), ("error", 400, "Md5Mismatch")),
}


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not AZURITE.exists():
        pytest.skip("Azurite is not installed: run scripts/clients/azurite.sh")
    port = free_port()
    where = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
                             str(where), "--disableTelemetry", "--skipApiVersionCheck", "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("Azurite did not start")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/{ACCOUNT}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def chunkd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory, "--no-auth")


def _azurite_container(endpoint: str) -> tuple[str, Callable[[str], str]]:
    name = f"diff{os.getpid()}{int(time.time() * 1000) % 100000}"
    conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={endpoint};")
    BlobServiceClient.from_connection_string(conn).create_container(name)

    def sas(permission: str) -> str:
        return generate_container_sas(ACCOUNT, name, account_key=KEY, permission=permission,
                                      expiry=datetime.now(UTC) + timedelta(hours=1), protocol="https,http")

    return f"{endpoint}/{name}", sas


def _chunkd_container(server: ServerProcess) -> tuple[str, Callable[[str], str]]:
    url, _ = split_sas(new_session_url(server.url))
    account, name = url.rsplit("/", 2)[-2:]
    key = base64.b64encode(load_or_create_account_key(server.data_dir)).decode()

    def sas(permission: str) -> str:
        return generate_container_sas(account, name, account_key=key, permission=permission,
                                      expiry=datetime.now(UTC) + timedelta(hours=1), protocol="https,http")

    return url, sas


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except HttpResponseError as exc:
        return ("error", exc.status_code, exc.error_code)


def _corrupt(request: Any) -> None:
    body = request.http_request.data
    raw = body if isinstance(body, bytes | bytearray) else body.read()
    request.http_request.data = bytes([raw[0] ^ 0xFF]) + bytes(raw[1:])


def scenario(url: str, sas: Callable[[str], str]) -> dict[str, Any]:
    """The SDK call sequence; every step's result or ('error', status, code)."""
    token = sas("racwdl")
    c = ContainerClient.from_container_url(f"{url}?{token}")
    blocks = ContainerClient.from_container_url(f"{url}?{token}", max_single_put_size=1 << 20, max_block_size=1 << 20)
    csv = b"sourcedId,name\n1,North\n"
    big = os.urandom((3 << 20) + 12345)
    out: dict[str, Any] = {}

    def step(name: str, call: Callable[[], Any]) -> None:
        out[name] = _outcome(call)

    step("put", lambda: bool(c.upload_blob("orgs.csv", csv, overwrite=True, metadata={"via": "sdk"},
                                           content_settings=ContentSettings(content_type="text/csv")).url))
    step("put_no_overwrite", lambda: c.upload_blob("orgs.csv", b"x"))
    for n in ("dir/a.csv", "dir/sub/b.csv", "z.csv", "empty.csv"):
        step(f"put_{n}", lambda n=n: bool(c.upload_blob(n, b"" if n == "empty.csv" else n.encode(), overwrite=True)))
    step("put_blocks", lambda: bool(blocks.get_blob_client("big.bin").upload_blob(big, max_concurrency=2)))
    step("put_blocks_no_overwrite", lambda: blocks.upload_blob("big.bin", big))
    step("big_block_list", lambda: [(b.size,) for b in c.get_blob_client("big.bin").get_block_list("all")[0]])
    step("big_sha", lambda: hashlib.sha256(c.download_blob("big.bin", max_concurrency=2).readall()).hexdigest()
         == hashlib.sha256(big).hexdigest())
    m = c.get_blob_client("manual.bin")
    for sid, data in (("AAAA", b"first-"), ("BBBB", b"second-"), ("CCCC", b"third")):
        step(f"stage_{sid}", lambda sid=sid, data=data: m.stage_block(sid, data)["request_server_encrypted"])
    step("stage_bad_md5", lambda: m.stage_block("DDDD", b"x", validate_content=True, raw_request_hook=_corrupt))
    step("uncommitted_list", lambda: [(b.id, b.size) for b in m.get_block_list("all")[1]])
    step("uncommitted_props", lambda: m.get_blob_properties().size)
    step("commit_unknown", lambda: m.commit_block_list([BlobBlock("ZZZZ")]))
    step("commit", lambda: bool(m.commit_block_list([BlobBlock("CCCC"), BlobBlock("AAAA")])))
    step("manual_bytes", lambda: m.download_blob().readall())
    step("manual_blocks", lambda: [[(b.id, b.size) for b in part] for part in m.get_block_list("all")])
    step("list", lambda: [(b.name, b.size, b.content_settings.content_type) for b in c.list_blobs()])
    step("list_meta", lambda: [(b.name, b.metadata) for b in c.list_blobs(include=["metadata"])])
    step("walk", lambda: [b.name for b in c.walk_blobs(delimiter="/")])
    step("prefix", lambda: [b.name for b in c.list_blobs(name_starts_with="dir/")])
    step("pages", lambda: [[b.name for b in page] for page in c.list_blobs(results_per_page=2).by_page()])
    step("range", lambda: c.download_blob("orgs.csv", offset=3, length=5).readall())
    step("empty_download", lambda: c.download_blob("empty.csv").readall())
    step("props", lambda: (lambda p: (p.size, p.content_settings.content_type, p.metadata, p.blob_type))(
        c.get_blob_client("orgs.csv").get_blob_properties()))
    step("exists", lambda: (c.get_blob_client("orgs.csv").exists(), c.get_blob_client("nope.csv").exists()))
    step("props_missing", lambda: c.get_blob_client("nope.csv").get_blob_properties())
    step("download_missing", lambda: c.download_blob("nope.csv").readall())
    step("delete", lambda: c.delete_blob("z.csv"))
    step("delete_again", lambda: c.delete_blob("z.csv"))
    step("bad_md5", lambda: c.upload_blob("orgs.csv", b"tampered", overwrite=True, validate_content=True,
                                          raw_request_hook=_corrupt))
    step("after_bad_md5", lambda: c.download_blob("orgs.csv").readall())
    step("container_props", lambda: bool(c.get_container_properties().etag))  # not allowed by a service SAS
    tampered = token.replace("sig=", "sig=A") if "sig=A" not in token else token.replace("sig=A", "sig=B")
    step("tampered_sig", lambda: ContainerClient.from_container_url(f"{url}?{tampered}").upload_blob(
        "evil.csv", b"x", overwrite=True))
    step("read_only_write", lambda: ContainerClient.from_container_url(f"{url}?{sas('rl')}").upload_blob(
        "evil.csv", b"x", overwrite=True))
    step("read_only_list", lambda: len(list(ContainerClient.from_container_url(f"{url}?{sas('rl')}").list_blobs())))
    step("checked_blocks", lambda: bool(blocks.get_blob_client("checked.bin").upload_blob(
        big[: (2 << 20) + 5], validate_content=True, max_concurrency=2)))
    step("checked_download", lambda: c.download_blob("checked.bin", validate_content=True).readall()
         == big[: (2 << 20) + 5])
    step("checked_range", lambda: c.download_blob("checked.bin", offset=100, length=1000,
                                                  validate_content=True).readall() == big[100:1100])
    mixed = c.get_blob_client("mixed.bin")
    step("mixed_1", lambda: mixed.stage_block("AAAA", b"1")["request_server_encrypted"])
    step("mixed_2", lambda: mixed.stage_block("AAAAAAAA", b"2")["request_server_encrypted"])
    step("list_uncommitted", lambda: sorted(b.name for b in c.list_blobs(include=["uncommittedblobs"])))
    step("range_beyond", lambda: c.download_blob("orgs.csv", offset=1000, length=10).readall())
    step("if_match_stale", lambda: c.get_blob_client("orgs.csv").upload_blob(
        b"x", overwrite=True, etag='"0x8D0000000000000"', match_condition=MatchConditions.IfNotModified))
    # Set Blob Metadata / Properties, Blob Batch delete
    p = c.get_blob_client("dir/a.csv")
    stale = {"etag": '"0x8D0000000000000"', "match_condition": MatchConditions.IfNotModified}
    step("set_metadata", lambda: bool(p.set_blob_metadata({"via": "meta", "n": "1"})["etag"]))
    step("after_metadata", lambda: (lambda q: (q.metadata, q.content_settings.content_type, q.size))(
        p.get_blob_properties()))
    step("clear_metadata", lambda: (p.set_blob_metadata(), p.get_blob_properties().metadata)[1])
    step("set_headers", lambda: bool(p.set_http_headers(ContentSettings(
        content_type="text/plain", content_language="de", cache_control="no-cache"))["etag"]))
    step("after_headers", lambda: (lambda q: (q.content_settings.content_type, q.content_settings.content_language,
                                              q.content_settings.cache_control, q.content_settings.content_md5,
                                              q.size))(p.get_blob_properties()))
    step("headers_listed", lambda: [(b.name, b.content_settings.content_type, b.content_settings.content_language)
                                    for b in c.list_blobs(name_starts_with="dir/a")])
    step("headers_bytes", lambda: p.download_blob().readall())
    step("set_metadata_missing", lambda: c.get_blob_client("nope.csv").set_blob_metadata({"a": "b"}))
    step("set_headers_missing", lambda: c.get_blob_client("nope.csv").set_http_headers(ContentSettings()))
    step("set_metadata_stale", lambda: p.set_blob_metadata({"a": "b"}, **stale))
    step("set_headers_stale", lambda: p.set_http_headers(ContentSettings(content_type="x/y"), **stale))
    step("set_metadata_staged_only", lambda: mixed.set_blob_metadata({"a": "b"}))
    read_only = ContainerClient.from_container_url(f"{url}?{sas('rl')}")
    step("read_only_metadata", lambda: read_only.get_blob_client("orgs.csv").set_blob_metadata({"a": "b"}))
    step("batch_delete", lambda: [r.status_code for r in c.delete_blobs(
        "dir/sub/b.csv", "empty.csv", "nope.csv", raise_on_any_failure=False)])
    step("batch_partial", lambda: c.delete_blobs("dir/a.csv", "nope.csv"))
    step("read_only_batch", lambda: [r.status_code for r in read_only.delete_blobs("orgs.csv",
                                                                                    raise_on_any_failure=False)])
    step("final_list", lambda: [b.name for b in c.list_blobs()])
    return out


@pytest.mark.slow
def test_same_sdk_calls_same_answers(azurite: str, chunkd: ServerProcess) -> None:
    reference = scenario(*_azurite_container(azurite))
    ours = scenario(*_chunkd_container(chunkd))
    assert reference.keys() == ours.keys()
    for step, (theirs, mine) in KNOWN_DIFFERENCES.items():
        assert (reference[step], ours[step]) == (theirs, mine), step
    differ = {k: (reference[k], ours[k]) for k in reference if k not in KNOWN_DIFFERENCES and reference[k] != ours[k]}
    assert differ == {}, "\n".join(f"{k}: azurite={a!r} chunkd={b!r}" for k, (a, b) in differ.items())
    # and the comparison is not vacuous: errors happened where they should
    assert ours["put_no_overwrite"] == ("error", 409, "BlobAlreadyExists")
    assert ours["bad_md5"] == ("error", 400, "Md5Mismatch") and ours["after_bad_md5"] == b"sourcedId,name\n1,North\n"
    assert ours["commit_unknown"] == ("error", 400, "InvalidBlockList")
    assert ours["read_only_write"] == ("error", 403, "AuthorizationPermissionMismatch")
    assert ours["checked_blocks"] is ours["checked_download"] is ours["checked_range"] is ours["big_sha"] is True
    assert ours["after_metadata"][0] == {"via": "meta", "n": "1"} and ours["clear_metadata"] == {}
    assert ours["after_headers"] == ("text/plain", "de", "no-cache", None, 9)  # the unset Content-MD5 is cleared
    assert ours["batch_delete"] == [202, 202, 404] and ours["read_only_batch"] == [403]
    assert ours["final_list"] == ["big.bin", "checked.bin", "manual.bin", "orgs.csv"]
