"""azure-storage-blob 12.31.1 uploads into an Industry Data upload session knowing nothing but the sessionUrl."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import ContainerClient, ContentSettings, PartialBatchErrorException

from chunkd.auth.permissions import ALL_ROLES
from chunkd.auth.tokens import issue_token, load_or_create_secret
from tests.protocols.industry_data.helpers import BETA, create_connector, split_sas, start_server, upload_session
from tests.serverproc import ServerProcess

BIG = 150 << 20
CSVS = {
    "orgs.csv": b"sourcedId,name,type\n1,North High,school\n",
    "users.csv": "sourcedId,username,givenName\n1,ana,Ana\n2,zoe,Zo\u00eb\n".encode(),
    "roles.csv": b"userSourcedId,orgSourcedId,role\n1,1,student\n",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory, "--workers", "2")  # blocks land in either process


@pytest.fixture(scope="module")
def graph(server: ServerProcess) -> dict[str, str]:
    token = issue_token(load_or_create_secret(server.data_dir), roles=list(ALL_ROLES))
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for _ in range(BIG >> 20):
            piece = os.urandom(1 << 20)
            digest.update(piece)
            fh.write(piece)
    return path, digest.hexdigest()


def _corrupt_body(request: Any) -> None:
    """Flips the body's first byte after the SDK computed Content-MD5 (the hook runs later in the pipeline)."""
    body = request.http_request.data
    raw = body if isinstance(body, bytes | bytearray) else body.read()
    request.http_request.data = bytes([raw[0] ^ 0xFF]) + bytes(raw[1:])


@pytest.mark.slow
def test_sdk_uploads_csvs_and_150_mib_through_the_session_url(server: ServerProcess, graph: dict[str, str],
                                                             big_file: tuple[Path, str]) -> None:
    connector = create_connector(server.url, graph)["id"]
    session = upload_session(server.url, connector, headers=graph)
    container = ContainerClient.from_container_url(session["sessionUrl"])
    for name, data in CSVS.items():
        container.upload_blob(name, data, overwrite=True, content_settings=ContentSettings(content_type="text/csv"),
                              metadata={"uploadvia": "sdk"})
    path, digest = big_file
    with path.open("rb") as fh:
        result = container.get_blob_client("big.bin").upload_blob(fh, length=BIG, overwrite=True, max_concurrency=4)
    assert result["etag"] and result["last_modified"]
    blocks, uncommitted = container.get_blob_client("big.bin").get_block_list("all")
    assert len(blocks) == BIG // (4 << 20) + 1 and uncommitted == []  # Put Block x n + Put Block List
    listing = {b.name: b for b in container.list_blobs(include=["metadata"])}
    assert sorted(listing) == sorted([*CSVS, "big.bin"])
    assert listing["big.bin"].size == BIG and listing["users.csv"].content_settings.content_type == "text/csv"
    assert listing["orgs.csv"].metadata == {"uploadvia": "sdk"}
    for name, data in CSVS.items():
        assert container.download_blob(name).readall() == data
    got = hashlib.sha256()
    for chunk in container.download_blob("big.bin", max_concurrency=4).chunks():
        got.update(chunk)
    assert got.hexdigest() == digest

    # overwrite=False on an existing blob, and a body corrupted after its Content-MD5 was computed
    with pytest.raises(ResourceExistsError) as exists:
        container.upload_blob("orgs.csv", b"other")
    assert exists.value.error_code == "BlobAlreadyExists"
    with pytest.raises(HttpResponseError) as bad:
        container.upload_blob("orgs.csv", b"sourcedId,name\n9,Tampered\n", overwrite=True, validate_content=True,
                              raw_request_hook=_corrupt_body)
    assert (bad.value.status_code, bad.value.error_code) == (400, "Md5Mismatch")
    with pytest.raises(HttpResponseError) as bad:
        small_puts = ContainerClient.from_container_url(session["sessionUrl"], max_single_put_size=4 << 20)
        small_puts.upload_blob("corrupt.bin", os.urandom(9 << 20), overwrite=True, validate_content=True,
                               max_concurrency=2, raw_request_hook=_corrupt_body)
    assert bad.value.error_code == "Md5Mismatch"
    assert container.download_blob("orgs.csv").readall() == CSVS["orgs.csv"]
    assert "corrupt.bin" not in [b.name for b in container.list_blobs()]

    # the same set validates cleanly (big.bin is reported as an unexpected, ignored file)
    r = httpx.post(f"{server.url}{BETA}/dataConnectors/{connector}/validate", headers=graph)
    op = httpx.get(r.headers["Location"], headers=graph).json()
    assert op["errors"] == [] and ("UnexpectedFile", "big.bin") in [(w["code"], w["target"]) for w in op["warnings"]]


@pytest.mark.slow
def test_sdk_metadata_properties_and_batch_delete(server: ServerProcess, graph: dict[str, str]) -> None:
    connector = create_connector(server.url, graph)["id"]
    session = upload_session(server.url, connector, headers=graph)
    url, _ = split_sas(session["sessionUrl"])
    container = ContainerClient.from_container_url(session["sessionUrl"])
    for name, data in CSVS.items():
        container.upload_blob(name, data, content_settings=ContentSettings(content_type="text/csv",
                                                                           cache_control="max-age=60"))
    orgs = container.get_blob_client("orgs.csv")
    before = orgs.get_blob_properties()
    changed = orgs.set_blob_metadata({"uploadvia": "sdk", "batch": "7"})
    assert changed["etag"] != before.etag
    after = orgs.get_blob_properties()
    assert after.metadata == {"uploadvia": "sdk", "batch": "7"} and after.etag == changed["etag"]
    assert after.content_settings.content_type == "text/csv" and after.size == len(CSVS["orgs.csv"])
    headers = orgs.set_http_headers(ContentSettings(content_type="text/csv; charset=utf-8", content_language="en",
                                                    content_disposition="attachment; filename=orgs.csv"))
    after = orgs.get_blob_properties()
    assert after.etag == headers["etag"] and after.metadata == {"uploadvia": "sdk", "batch": "7"}
    cs = after.content_settings
    assert (cs.content_type, cs.content_language, cs.content_disposition, cs.cache_control) == (
        "text/csv; charset=utf-8", "en", "attachment; filename=orgs.csv", None)  # unset headers are cleared
    assert orgs.download_blob().readall() == CSVS["orgs.csv"]
    listed = {b.name: b for b in container.list_blobs(include=["metadata"])}
    assert listed["orgs.csv"].metadata == {"uploadvia": "sdk", "batch": "7"}
    with pytest.raises(HttpResponseError) as stale:
        orgs.set_blob_metadata({}, etag=before.etag, match_condition=MatchConditions.IfNotModified)
    assert (stale.value.status_code, stale.value.error_code) == (412, "ConditionNotMet")

    # Blob Batch: through the sessionUrl and through the older /blob/{account}/... alias
    results = container.delete_blobs("users.csv", "missing.csv", raise_on_any_failure=False)
    assert [r.status_code for r in results] == [202, 404]
    alias = ContainerClient.from_container_url(session["sessionUrl"].replace(url, url.replace(
        f"{server.url}/", f"{server.url}/blob/")))
    assert [r.status_code for r in alias.delete_blobs("roles.csv")] == [202]
    with pytest.raises(PartialBatchErrorException):
        container.delete_blobs("orgs.csv", "roles.csv")  # roles.csv is gone: raise_on_any_failure
    assert [b.name for b in container.list_blobs()] == []

    # after validate the session's SAS cannot write: every subrequest is refused, nothing deleted
    container.upload_blob("orgs.csv", CSVS["orgs.csv"])
    assert httpx.post(f"{server.url}{BETA}/dataConnectors/{connector}/validate", headers=graph).status_code == 202
    refused = container.delete_blobs("orgs.csv", raise_on_any_failure=False)
    assert [(r.status_code, r.headers["x-ms-error-code"]) for r in refused] == [(403, "AuthorizationFailure")]
    with pytest.raises(HttpResponseError) as sealed:
        orgs.set_blob_metadata({"late": "1"})
    assert (sealed.value.status_code, sealed.value.error_code) == (403, "AuthorizationFailure")
    assert [b.name for b in container.list_blobs()] == ["orgs.csv"]


@pytest.mark.slow
def test_sdk_validate_content_md5_and_crc64_per_request(server: ServerProcess, graph: dict[str, str]) -> None:
    """``validate_content`` makes the SDK send a checksum with every request: Content-MD5 (True / "md5") or
    x-ms-content-crc64 ("crc64"), on Put Blob and on each Put Block. chunkd checks each and answers with its
    own, which the SDK compares in turn; a body corrupted after its checksum was computed is refused and
    leaves no blob behind. A structured-message body ("crc64-sm"), whose framing chunkd does not decode, is
    refused before any byte is stored."""
    connector = create_connector(server.url, graph)["id"]
    session = upload_session(server.url, connector, headers=graph)
    blocks = ContainerClient.from_container_url(session["sessionUrl"], max_single_put_size=4 << 20,
                                                max_block_size=4 << 20)
    data = os.urandom((9 << 20) + 5)  # three Put Blocks and a Put Block List
    for mode in (True, "md5", "crc64"):
        name = f"checked-{mode}.bin"
        blocks.upload_blob(name, data, overwrite=True, validate_content=mode, max_concurrency=2)
        assert blocks.download_blob(name).readall() == data
        small = f"small-{mode}.csv"  # one Put Blob
        blocks.upload_blob(small, CSVS["orgs.csv"], overwrite=True, validate_content=mode)
        assert blocks.download_blob(small).readall() == CSVS["orgs.csv"]
    for name, payload in (("corrupt-crc.bin", data), ("corrupt-crc.csv", CSVS["users.csv"])):
        with pytest.raises(HttpResponseError) as bad:
            blocks.upload_blob(name, payload, overwrite=True, validate_content="crc64", max_concurrency=2,
                               raw_request_hook=_corrupt_body)
        assert (bad.value.status_code, bad.value.error_code) == (400, "Crc64Mismatch")
    with pytest.raises(HttpResponseError) as framed:
        blocks.upload_blob("framed.csv", CSVS["roles.csv"], overwrite=True, validate_content="crc64-sm")
    assert (framed.value.status_code, framed.value.error_code) == (400, "UnsupportedHeader")
    names = [b.name for b in blocks.list_blobs()]
    assert not [n for n in names if n.startswith("corrupt") or n == "framed.csv"]
