"""The upload flow over in-memory protocol fakes (httpx.MockTransport): parallelism, retries, resume."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from pathlib import Path

import httpx
import pytest

from chunkd.client import (
    AsyncUploader,
    AuthError,
    ConfigError,
    Progress,
    RetriesExhausted,
    RetryPolicy,
    ServerError,
    Uploader,
    UploadOptions,
)
from chunkd.client._flow import parse_retry_after
from tests.client.fakes import FakeBlob, FakeImageStore, FakePrint, FakeTus

FAST = RetryPolicy(max_retries=5, base=0.001, cap=0.01)
KiB = 1024


def make_file(tmp_path: Path, size: int, name: str = "f.bin") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def uploader(server, tmp_path: Path, **kw) -> Uploader:
    opts = {"parallel": 4, "chunk_size": 64 * KiB, "retry": FAST, "state_dir": tmp_path / "state", **kw}
    progress = opts.pop("progress", None)
    return Uploader(client=httpx.Client(transport=server.transport()), token="t0k",
                    options=UploadOptions(**opts), progress=progress)


SF = "http://sf.test/ImageStore/dir/f.bin"


@pytest.mark.parametrize("size", [0, 1, 1000 * KiB + 7])
def test_sf_parallel_upload_is_exact_and_bounded(tmp_path: Path, size: int) -> None:
    server = FakeImageStore()
    path, data = make_file(tmp_path, size)
    events: list[Progress] = []
    result = uploader(server, tmp_path, progress=events.append).upload(path, SF)
    assert server.files["dir/f.bin"] == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert server.body_bytes == size == result.sent  # every byte sent exactly once
    assert server.max_in_flight <= 4
    if size > 256 * KiB:
        assert server.max_in_flight > 1
    assert events[-1].phase == "done" and events[-1].done == size
    assert not list((tmp_path / "state").glob("*.json"))  # resume state removed after success


def test_sf_survives_dropped_connections_errors_and_lost_responses(tmp_path: Path) -> None:
    server = FakeImageStore()
    path, data = make_file(tmp_path, 2000 * KiB)
    counter = itertools.count()

    def fault(request: httpx.Request) -> httpx.Response | Exception | None:
        if request.url.path.endswith("UploadChunk"):
            n = next(counter)
            if n % 7 == 3:
                return httpx.ConnectError("refused")
            if n % 7 == 5:
                return httpx.Response(503, headers={"Retry-After": "0"}, json={"Error": {"Code": "E_ABORT"}})
        return None

    lost = itertools.count()
    server.fault = fault
    server.lose = lambda r: r.url.path.endswith("UploadChunk") and next(lost) % 9 == 4
    result = uploader(server, tmp_path).upload(path, SF)
    assert server.files["dir/f.bin"] == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    # chunks whose response was lost were stored; the re-ask found them, so nothing was sent twice
    assert server.body_bytes == len(data)


def test_retry_after_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("chunkd.client._sync.time.sleep", slept.append)
    server = FakeImageStore()
    path, data = make_file(tmp_path, 10)
    once = iter([httpx.Response(429, headers={"Retry-After": "7"})])
    server.fault = lambda r: next(once, None) if r.url.path.endswith("UploadChunk") else None
    uploader(server, tmp_path).upload(path, SF)
    assert server.files["dir/f.bin"] == data
    assert slept and max(slept) >= 7
    assert parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT") > 1e6
    assert RetryPolicy(cap=1).delay(10) <= 1


def test_gives_up_without_progress_and_refuses_auth_at_once(tmp_path: Path) -> None:
    server = FakeImageStore()
    path, _ = make_file(tmp_path, 100)
    server.fault = lambda r: httpx.Response(500) if r.url.path.endswith("UploadChunk") else None
    with pytest.raises(RetriesExhausted):
        uploader(server, tmp_path, retry=RetryPolicy(max_retries=2, base=0.001)).upload(path, SF)
    server = FakeImageStore()
    server.fault = lambda r: httpx.Response(403, json={"Error": {"Code": "E_ACCESSDENIED"}})
    with pytest.raises(AuthError):
        uploader(server, tmp_path).upload(path, SF)
    assert len(server.requests) == 1


class Crash(BaseException):
    pass


def test_resume_after_a_crash_sends_only_what_is_missing(tmp_path: Path) -> None:
    server = FakeImageStore()
    path, data = make_file(tmp_path, 1024 * KiB)
    count = itertools.count()

    def crash_midway(request: httpx.Request) -> None:
        if request.url.path.endswith("UploadChunk") and next(count) == 8:
            raise Crash()

    server.fault = crash_midway  # type: ignore[assignment]
    with pytest.raises(Crash):
        uploader(server, tmp_path, parallel=1).upload(path, SF)
    assert list((tmp_path / "state").glob("*.json"))
    received = server.body_bytes
    assert 0 < received < len(data)
    server.fault = None
    result = uploader(server, tmp_path, parallel=4).upload(path, SF)
    assert result.resumed_from == received
    assert server.body_bytes == len(data)  # the second run sent only the rest
    assert server.files["dir/f.bin"] == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()  # digest covers the part sent by the first run
    # --no-resume starts a new session and sends everything again
    server2 = FakeImageStore()
    result = uploader(server2, tmp_path, resume=False).upload(path, SF)
    assert result.resumed_from == 0 and server2.body_bytes == len(data)


def test_resume_when_the_server_forgot_the_session_starts_over(tmp_path: Path) -> None:
    server = FakeImageStore()
    path, data = make_file(tmp_path, 512 * KiB)
    count = itertools.count()

    def crash(request: httpx.Request) -> None:
        if request.url.path.endswith("UploadChunk") and next(count) == 3:
            raise Crash()

    server.fault = crash  # type: ignore[assignment]
    with pytest.raises(Crash):
        uploader(server, tmp_path, parallel=1).upload(path, SF)
    server.fault = None
    server.sessions.clear()  # expired on the server
    result = uploader(server, tmp_path).upload(path, SF)
    assert result.resumed_from == 0 and server.files["dir/f.bin"] == data


@pytest.mark.parametrize("concat", [False, True])
def test_tus(tmp_path: Path, concat: bool) -> None:
    server = FakeTus(concat=concat)
    path, data = make_file(tmp_path, 3 * 1024 * KiB + 5)
    lost = itertools.count()
    server.lose = lambda r: r.method == "PATCH" and next(lost) == 2  # a PATCH applied but its 204 lost
    result = uploader(server, tmp_path).upload(path, "http://tus.test/files/")
    uid = result.location.rsplit("/", 1)[1]
    assert bytes(server.uploads[uid]["data"]) == data  # type: ignore[call-overload]
    assert server.body_bytes == len(data)  # the PATCH whose answer was lost was not sent again
    if not concat:
        assert server.max_in_flight == 1
    else:
        assert any(m == "POST" for m, _ in server.requests[-3:])  # the final concatenation


def test_tus_empty_file(tmp_path: Path) -> None:
    server = FakeTus()
    path, _ = make_file(tmp_path, 0)
    result = uploader(server, tmp_path).upload(path, "http://tus.test/files/")
    assert [m for m, _ in server.requests] == ["POST", "HEAD"]
    assert result.size == 0


def test_print_flow(tmp_path: Path) -> None:
    server = FakePrint()
    path, data = make_file(tmp_path, 700 * KiB)
    lost = itertools.count()
    server.lose = lambda r: r.method == "PUT" and next(lost) == 1  # -> 416 on resend, re-ask fixes it
    doc = "http://graph.test/v1.0/print/printers/p/jobs/j/documents/d"
    result = uploader(server, tmp_path, parallel=16).upload(path, doc)
    assert server.documents["/v1.0/print/printers/p/jobs/j/documents/d"] == data
    assert server.max_in_flight <= 4  # Graph allows 4 concurrent ranges
    assert server.auth_on_upload_url == 0  # the uploadUrl carries its own token
    assert result.location == doc
    with pytest.raises(ConfigError):
        uploader(server, tmp_path, chunk_size=10_000_000).upload(path, doc)
    with pytest.raises(ConfigError):
        uploader(FakeImageStore(), tmp_path, chunk_size=0).upload(path, SF)


def test_blob_blocks_resume_and_single_put(tmp_path: Path) -> None:
    server = FakeBlob()
    container = "http://blob.test/acct/c1?sv=2025-11-05&sr=c&sp=racwdl&sig=s3cret"
    path, data = make_file(tmp_path, 600 * KiB, "report.csv")
    count = itertools.count()

    def crash(request: httpx.Request) -> None:
        if "comp=block&" in str(request.url) and next(count) == 4:
            raise Crash()

    server.fault = crash  # type: ignore[assignment]
    with pytest.raises(Crash):
        uploader(server, tmp_path, parallel=1).upload(path, container)
    server.fault = None
    first = server.block_bytes
    result = uploader(server, tmp_path).upload(path, container)
    assert server.blobs["/acct/c1/report.csv"] == data
    assert result.resumed_from == first and server.block_bytes == len(data)
    small, sdata = make_file(tmp_path, 3, "s.txt")
    uploader(server, tmp_path).upload(small, container)
    assert server.blobs["/acct/c1/s.txt"] == sdata
    empty, _ = make_file(tmp_path, 0, "e.txt")
    uploader(server, tmp_path, verify=True).upload(empty, container)
    assert server.blobs["/acct/c1/e.txt"] == b""


def test_async_driver_with_faults(tmp_path: Path) -> None:
    server = FakeImageStore()
    path, data = make_file(tmp_path, 900 * KiB)
    counter = itertools.count()
    server.fault = lambda r: httpx.ReadTimeout("slow") if (r.url.path.endswith("UploadChunk")
                                                          and next(counter) % 4 == 1) else None

    async def main() -> None:
        options = UploadOptions(parallel=3, chunk_size=64 * KiB, retry=FAST, state_dir=tmp_path / "st", verify=True)
        async with AsyncUploader(client=httpx.AsyncClient(transport=server.transport()), options=options) as up:
            result = await up.upload(path, SF)
        assert result.verified is True

    asyncio.run(main())
    assert server.files["dir/f.bin"] == data
    assert server.max_in_flight <= 3


BLOB_SAS = "http://blob.test/acct/c1?sv=2025-11-05&sr=c&sp=racwdl&sig=s3cret"
PRINT_DOC = "http://graph.test/v1.0/print/printers/p/jobs/j/documents/d"


def _stored(server, result) -> bytes:  # type: ignore[no-untyped-def]
    if isinstance(server, FakeImageStore):
        return server.files["dir/f.bin"]
    if isinstance(server, FakeTus):
        return bytes(server.uploads[result.location.rsplit("/", 1)[1]]["data"])  # type: ignore[call-overload]
    if isinstance(server, FakePrint):
        return server.documents["/v1.0/print/printers/p/jobs/j/documents/d"]
    return server.blobs["/acct/c1/f.bin"]


@pytest.mark.parametrize(("make", "target", "send"), [
    (FakeImageStore, SF, "PUT"),
    (FakeTus, "http://tus.test/files/", "PATCH"),
    (lambda: FakeTus(concat=True), "http://tus.test/files/", "PATCH"),
    (FakePrint, PRINT_DOC, "PUT"),
    (FakeBlob, BLOB_SAS, "PUT"),
], ids=["sf", "tus", "tus-concat", "print", "blob"])
def test_crash_then_resume_sends_each_byte_once(tmp_path: Path, make, target: str, send: str) -> None:  # type: ignore[no-untyped-def]
    server = make()
    path, data = make_file(tmp_path, 1536 * KiB + 11)
    count = itertools.count()

    def crash(request: httpx.Request) -> None:
        if request.method == send and next(count) == 9:
            raise Crash()

    server.fault = crash
    with pytest.raises(Crash):
        uploader(server, tmp_path, parallel=3).upload(path, target)
    server.fault = None
    sent_before = server.body_bytes
    result = uploader(server, tmp_path, parallel=3).upload(path, target)
    assert _stored(server, result) == data
    assert result.resumed_from > 0
    assert result.sent == len(data) - result.resumed_from
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    if not isinstance(server, FakeBlob | FakePrint):  # (their bodies include JSON/XML control documents)
        assert server.body_bytes == len(data) and sent_before == result.resumed_from


def test_a_changed_file_never_resumes_into_the_old_upload(tmp_path: Path) -> None:
    server = FakeImageStore()
    path, _ = make_file(tmp_path, 512 * KiB)
    count = itertools.count()

    def crash(request: httpx.Request) -> None:
        if request.method == "PUT" and next(count) == 3:
            raise Crash()

    server.fault = crash  # type: ignore[assignment]
    with pytest.raises(Crash):
        uploader(server, tmp_path, parallel=1).upload(path, SF)
    server.fault = None
    data = os.urandom(512 * KiB)
    path.write_bytes(data)  # same size, new content and mtime
    os.utime(path, ns=(1, 1))
    result = uploader(server, tmp_path).upload(path, SF)
    assert result.resumed_from == 0 and server.files["dir/f.bin"] == data


def test_a_failure_in_every_round_never_gives_up_while_bytes_arrive(tmp_path: Path) -> None:
    server = FakeImageStore()
    path, data = make_file(tmp_path, 64 * 40 * KiB)
    count = itertools.count()
    # every third chunk request fails: 13 failed rounds in a row, far more than max_retries=2
    server.fault = lambda r: httpx.Response(503) if r.method == "PUT" and next(count) % 3 == 2 else None
    result = uploader(server, tmp_path, parallel=1, retry=RetryPolicy(max_retries=2, base=0.001)).upload(path, SF)
    assert server.files["dir/f.bin"] == data and result.sent == len(data)


def test_sf_bad_request_other_than_a_resent_range_fails_at_once(tmp_path: Path) -> None:
    server = FakeImageStore()
    path, _ = make_file(tmp_path, 100)
    server.fault = lambda r: httpx.Response(400, json={"Error": {"Code": "E_INVALIDARG", "Message": "bad path"}})
    with pytest.raises(ServerError) as info:
        uploader(server, tmp_path).upload(path, SF)
    assert info.value.status == 400 and "bad path" in str(info.value)
    assert len(server.requests) == 1
