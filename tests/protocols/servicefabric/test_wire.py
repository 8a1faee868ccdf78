"""Wire behaviour of the image store that docs/servicefabric.md promises, including every deliberate
difference from the Service Fabric runtime. One real server process per module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.serverproc import ServerProcess

API = "api-version=6.0"


@pytest.fixture(scope="module")
def c(sf_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sf_server.url, headers={"Authorization": f"Bearer {sf_server.token()}"},
                      timeout=30) as client:
        yield client


def put_chunk(c: httpx.Client, path: str, sid: str, start: int, body: bytes, total: int) -> httpx.Response:
    return c.put(f"/ImageStore/{path}/$/UploadChunk?{API}&session-id={sid}", content=body,
                 headers={"Content-Range": f"bytes {start}-{start + len(body) - 1}/{total}"})


def expected(c: httpx.Client, sid: str) -> list[tuple[int, int]]:
    r = c.get(f"/ImageStore/$/GetUploadSession?{API}&session-id={sid}")
    assert r.status_code == 200, r.text
    return [(int(g["StartPosition"]), int(g["EndPosition"])) for g in r.json()["UploadSessions"][0]["ExpectedRanges"]]


def error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["Error"]["Code"]


def test_cluster_endpoints_for_sfctl(c: httpx.Client) -> None:
    assert c.get("/").status_code == 200
    assert c.get("/$/GetClusterVersion?api-version=6.4").json()["Version"].startswith("8.2")


def test_identical_resend_is_a_no_op_success(c: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    assert put_chunk(c, "w/resend.bin", sid, 0, b"a" * 10, 30).status_code == 200
    assert put_chunk(c, "w/resend.bin", sid, 0, b"a" * 10, 30).status_code == 200  # the runtime: 400
    assert expected(c, sid) == [(10, 29)]


def test_partial_overlap_stores_only_the_new_part(c: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    assert put_chunk(c, "w/overlap.bin", sid, 0, b"a" * 10, 30).status_code == 200
    assert put_chunk(c, "w/overlap.bin", sid, 5, b"b" * 15, 30).status_code == 200  # the runtime: 400
    assert expected(c, sid) == [(20, 29)]
    assert put_chunk(c, "w/overlap.bin", sid, 20, b"c" * 10, 30).status_code == 200
    assert c.post(f"/ImageStore/$/CommitUploadSession?{API}&session-id={sid}").status_code == 200
    # received bytes are never rewritten: 5-9 keep the first chunk's bytes
    assert c.get(f"/ImageStore/w/overlap.bin/$/Content?{API}").content == b"a" * 10 + b"b" * 10 + b"c" * 10


def test_committed_session_stays_listed_and_accepts_only_resends(c: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    assert put_chunk(c, "w/done.bin", sid, 0, b"d" * 8, 8).status_code == 200
    assert c.post(f"/ImageStore/$/CommitUploadSession?{API}&session-id={sid}").status_code == 200
    assert c.post(f"/ImageStore/$/CommitUploadSession?{API}&session-id={sid}").status_code == 200
    listed = c.get(f"/ImageStore/w/done.bin/$/GetUploadSession?{API}").json()["UploadSessions"]
    assert [(s["SessionId"], s["ExpectedRanges"]) for s in listed] == [(sid, [])]
    assert put_chunk(c, "w/done.bin", sid, 0, b"d" * 8, 8).status_code == 200
    # deleting the session keeps the file; committing it afterwards is the runtime's E_INVALIDARG
    assert c.delete(f"/ImageStore/$/DeleteUploadSession?{API}&session-id={sid}").status_code == 200
    assert error(c.post(f"/ImageStore/$/CommitUploadSession?{API}&session-id={sid}")) == (400, "E_INVALIDARG")
    assert c.get(f"/ImageStore/w/done.bin/$/Content?{API}").content == b"d" * 8


def test_several_sessions_on_one_path(c: httpx.Client) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert put_chunk(c, "w\\multi.bin", first, 0, b"1" * 4, 10).status_code == 200
    assert put_chunk(c, "w/multi.bin", second, 4, b"2" * 6, 10).status_code == 200
    r = c.get(f"/ImageStore/w%5Cmulti.bin/$/GetUploadSession?{API}")
    got = {s["SessionId"]: s for s in r.json()["UploadSessions"]}
    assert got[first]["StoreRelativePath"] == "w\\multi.bin" and got[first]["FileSize"] == "10"
    assert got[first]["ExpectedRanges"] == [{"StartPosition": "4", "EndPosition": "9"}]
    assert got[second]["ExpectedRanges"] == [{"StartPosition": "0", "EndPosition": "3"}]


def test_unknown_and_empty_answers(c: httpx.Client) -> None:
    unknown = str(uuid.uuid4())
    assert error(c.get(f"/ImageStore/$/GetUploadSession?{API}&session-id={unknown}")) == \
        (404, "FABRIC_E_FILE_NOT_FOUND")
    assert error(c.delete(f"/ImageStore/$/DeleteUploadSession?{API}&session-id={unknown}")) == \
        (404, "FABRIC_E_FILE_NOT_FOUND")
    r = c.get(f"/ImageStore/w/none.bin/$/GetUploadSession?{API}")
    assert r.status_code == 200 and r.json() == {"UploadSessions": []}
    for version in ("6.0", "6.2"):  # the runtime answers below 6.2 with a success-class 404/204
        assert error(c.get(f"/ImageStore/w/none.bin?api-version={version}")) == (404, "FABRIC_E_FILE_NOT_FOUND")
    assert error(c.get(f"/ImageStore/w/none.bin/$/Content?{API}")) == (404, "FABRIC_E_FILE_NOT_FOUND")
    assert error(c.get("/ImageStore/w/none/$/FolderSize?api-version=6.5")) == (404, "FABRIC_E_FILE_NOT_FOUND")
    assert c.delete(f"/ImageStore/w/none.bin?{API}").status_code == 200


def test_empty_folder_is_200_with_empty_lists(c: httpx.Client) -> None:
    assert c.put(f"/ImageStore/emptied/sub/x.txt?{API}", content=b"x").status_code == 200
    assert c.delete(f"/ImageStore/emptied/sub/x.txt?{API}").status_code == 200
    r = c.get("/ImageStore/emptied/sub?api-version=6.2")  # the folder stays after its last file is deleted
    assert r.status_code == 200 and r.json() == {"StoreFiles": [], "StoreFolders": []}  # the runtime: 204


def test_zero_byte_file(c: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    r = c.put(f"/ImageStore/w/zero.bin/$/UploadChunk?{API}&session-id={sid}", content=b"",
              headers={"Content-Range": "bytes 0-0/0"})
    assert r.status_code == 200, r.text
    assert expected(c, sid) == []  # the runtime: [{0,0}] forever, so commit always fails
    assert c.post(f"/ImageStore/$/CommitUploadSession?{API}&session-id={sid}").status_code == 200
    assert c.get("/ImageStore/w/zero.bin?api-version=6.2").json()["StoreFiles"][0]["FileSize"] == "0"


def test_api_versions_and_timeouts_accepted(c: httpx.Client) -> None:
    for version in ("6.0", "6.1", "6.0-preview", "7", "8.2"):
        assert c.get(f"/ImageStore?api-version={version}").status_code == 200, version
    for query in ("timeout=1", "timeout=4294967295", "timeout=60&timeout=0"):  # the first occurrence wins
        assert c.get(f"/ImageStore?{API}&{query}").status_code == 200, query
    assert c.get("/ImageStore/$/Info?api-version=6.5").status_code == 200


def test_paths_percent_encoded_raw_and_backslashed_are_one_file(c: httpx.Client) -> None:
    assert c.put(f"/ImageStore/p%2Fq%5Cr%20s.txt?{API}", content=b"one").status_code == 200
    assert c.get(f"/ImageStore/p/q/r s.txt/$/Content?{API}").content == b"one"
    listing = c.get("/ImageStore/p%5Cq?api-version=6.2").json()
    assert [(f["StoreRelativePath"], f["FileSize"]) for f in listing["StoreFiles"]] == [("p\\q\\r s.txt", "3")]
    root = c.get(f"/ImageStore?{API}").json()
    assert {"StoreRelativePath": "p", "FileCount": "1"} in root["StoreFolders"]


def test_download_with_ranges(c: httpx.Client) -> None:
    assert c.put(f"/ImageStore/dl/ten.txt?{API}", content=b"0123456789").status_code == 200
    url = f"/ImageStore/dl/ten.txt/$/Content?{API}"
    whole = c.get(url)
    assert whole.status_code == 200 and whole.content == b"0123456789" and whole.headers["accept-ranges"] == "bytes"
    part = c.get(url, headers={"Range": "bytes=2-4"})
    assert (part.status_code, part.content, part.headers["content-range"]) == (206, b"234", "bytes 2-4/10")
    assert c.get(url, headers={"Range": "bytes=-3"}).content == b"789"
    assert c.get(url, headers={"Range": "bytes=7-"}).content == b"789"
    bad = c.get(url, headers={"Range": "bytes=10-20"})
    assert bad.status_code == 416 and bad.headers["content-range"] == "bytes */10"
    head = c.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == "10" and head.content == b""


def test_copy_with_mark_file_and_skip_files(c: httpx.Client) -> None:
    for name in ("a.txt", "b.txt"):
        assert c.put(f"/ImageStore/src/{name}?{API}", content=name.encode()).status_code == 200
    body = {"RemoteSource": "src", "RemoteDestination": "dst", "CheckMarkFile": True}
    assert c.post(f"/ImageStore/$/Copy?{API}", json=body).status_code == 200
    assert error(c.get("/ImageStore/dst?api-version=6.2"))[0] == 404  # no _.dir: nothing copied
    assert c.put(f"/ImageStore/src/_.dir?{API}", content=b"").status_code == 200
    body["SkipFiles"] = ["b.txt"]
    assert c.post(f"/ImageStore/$/Copy?{API}", json=body).status_code == 200
    files = c.get("/ImageStore/dst?api-version=6.2").json()["StoreFiles"]
    assert sorted(f["StoreRelativePath"] for f in files) == ["dst\\_.dir", "dst\\a.txt"]


def test_reads_are_open_to_any_principal(sf_server: ServerProcess, c: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    assert put_chunk(c, "w/owned.bin", sid, 0, b"o" * 3, 6).status_code == 200
    reader = {"Authorization": f"Bearer {sf_server.token('--roles', 'ImageStore.Read')}"}
    r = httpx.get(f"{sf_server.url}/ImageStore/$/GetUploadSession?{API}&session-id={sid}", headers=reader)
    assert r.status_code == 200 and r.json()["UploadSessions"][0]["ExpectedRanges"] == [
        {"StartPosition": "3", "EndPosition": "5"}]


def test_fabric_error_shape(c: httpx.Client) -> None:
    r = c.get("/ImageStore?api-version=99")
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"Error"} and set(r.json()["Error"]) == {"Code", "Message"}


def test_session_id_reuse_after_delete(c: httpx.Client) -> None:
    sid = str(uuid.uuid4())
    assert put_chunk(c, "w/reuse.bin", sid, 0, b"r" * 4, 8).status_code == 200
    assert c.delete(f"/ImageStore/$/DeleteUploadSession?{API}&session-id={sid}").status_code == 200
    # as on the runtime, the next chunk re-creates the session from scratch (another total is fine too)
    assert put_chunk(c, "w/reuse.bin", sid, 4, b"s" * 6, 10).status_code == 200
    assert expected(c, sid) == [(0, 3)]


def test_commit_onto_a_folder_or_below_a_file_is_refused_then_possible(c: httpx.Client) -> None:
    assert c.put(f"/ImageStore/clash/dir/inner.txt?{API}", content=b"i").status_code == 200
    onto_folder, below_file = str(uuid.uuid4()), str(uuid.uuid4())
    assert put_chunk(c, "clash/dir", onto_folder, 0, b"F" * 3, 3).status_code == 200
    assert put_chunk(c, "clash/dir/inner.txt/x", below_file, 0, b"B" * 2, 2).status_code == 200
    for sid in (onto_folder, below_file):
        r = c.post(f"/ImageStore/$/CommitUploadSession?{API}&session-id={sid}")
        assert error(r) == (400, "FABRIC_E_INVALID_DIRECTORY")
    # the sessions are still open and commit once the obstacle is gone
    assert c.delete(f"/ImageStore/clash/dir?{API}").status_code == 200
    assert c.post(f"/ImageStore/$/CommitUploadSession?{API}&session-id={onto_folder}").status_code == 200
    assert c.get(f"/ImageStore/clash/dir/$/Content?{API}").content == b"FFF"
    assert c.delete(f"/ImageStore/clash/dir?{API}").status_code == 200
    assert c.post(f"/ImageStore/$/CommitUploadSession?{API}&session-id={below_file}").status_code == 200
    assert c.get(f"/ImageStore/clash/dir/inner.txt/x/$/Content?{API}").content == b"BB"


def test_unauthenticated_answer_names_the_scheme(sf_server: ServerProcess) -> None:
    r = httpx.get(f"{sf_server.url}/ImageStore?{API}")
    assert error(r) == (401, "E_ACCESSDENIED") and r.headers["www-authenticate"].startswith("Bearer")
