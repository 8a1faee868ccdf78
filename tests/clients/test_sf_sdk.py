"""The real azure-servicefabric 8.2.0.0 SDK against a real ``chunkd serve`` process.

The SDK is used as its users use it (see real-clients.md): a msrest Authentication that adds the bearer
header, ``content=`` bytes for bodies, percent-encoded content paths with backslashes. Retries are off so
that a 5xx surfaces instead of being hidden by msrest's automatic resend.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from azure.servicefabric import ServiceFabricClientAPIs
from azure.servicefabric.models import FabricErrorException, ImageStoreCopyDescription
from msrest.authentication import Authentication

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.slow

MIB = 1 << 20
SIZE = 64 * MIB
CHUNK = 1 * MIB
PATH = "sdk\\nested folder\\big.bin"  # backslashes and a space: the SDK sends %5C and %20
KEY = "sdk/nested folder/big.bin"


class Bearer(Authentication):
    """No-op msrest credentials that add chunkd's bearer token to every request."""

    def __init__(self, token: str) -> None:
        self.token = token

    def signed_session(self, session=None):  # type: ignore[no-untyped-def]
        session = super().signed_session(session)
        session.headers["Authorization"] = f"Bearer {self.token}"
        return session


def sdk(server: ServerProcess, token: str) -> ServiceFabricClientAPIs:
    client = ServiceFabricClientAPIs(Bearer(token), base_url=server.url)
    client.config.retry_policy.total = False
    return client


def expected(sent: set[int], n_chunks: int, chunk: int, size: int) -> list[tuple[str, str]]:
    """The inclusive gaps left by the chunks ``sent`` (the runtime's ExpectedRanges)."""
    gaps: list[tuple[str, str]] = []
    i = 0
    while i < n_chunks:
        if i in sent:
            i += 1
            continue
        j = i
        while j + 1 < n_chunks and j + 1 not in sent:
            j += 1
        gaps.append((str(i * chunk), str(min((j + 1) * chunk, size) - 1)))
        i = j + 1
    return gaps


def ranges(info: object) -> list[tuple[str, str]]:
    return [(r.start_position, r.end_position) for r in info.expected_ranges]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("sfsdk") / "data", []).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return server.token()


def test_large_file_in_random_parallel_chunks(server: ServerProcess, token: str) -> None:
    data = random.randbytes(SIZE)
    sid = str(uuid.uuid4())
    n = SIZE // CHUNK
    order = list(range(n))
    random.shuffle(order)
    local = threading.local()

    def send(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = sdk(server, token)  # one client (one requests.Session) per thread
        start, end = i * CHUNK, min((i + 1) * CHUNK, SIZE)
        local.client.upload_file_chunk(PATH, sid, f"bytes {start}-{end - 1}/{SIZE}", content=data[start:end])

    client = sdk(server, token)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, order[: n // 2]))
        # midway: both views of the session report exactly the gaps
        gaps = expected(set(order[: n // 2]), n, CHUNK, SIZE)
        by_id = client.get_image_store_upload_session_by_id(sid).upload_sessions
        assert len(by_id) == 1 and ranges(by_id[0]) == gaps
        assert by_id[0].file_size == str(SIZE) and by_id[0].store_relative_path == PATH
        by_path = client.get_image_store_upload_session_by_path(PATH).upload_sessions
        assert [(s.session_id, ranges(s)) for s in by_path] == [(sid, gaps)]
        # committing with gaps is refused
        with pytest.raises(FabricErrorException) as err:
            client.commit_image_store_upload_session(sid)
        assert (err.value.response.status_code, err.value.error.error.code) == (400, "E_INVALIDARG")
        list(pool.map(send, order[n // 2:]))

    # an identical re-sent chunk (a retry after a lost 200) succeeds and changes nothing
    send(order[0])
    assert ranges(client.get_image_store_upload_session_by_id(sid).upload_sessions[0]) == []
    client.commit_image_store_upload_session(sid)
    client.commit_image_store_upload_session(sid)  # committing twice is a no-op

    listing = client.get_image_store_content("sdk\\nested folder")
    assert [(f.store_relative_path, f.file_size) for f in listing.store_files] == [(PATH, str(SIZE))]
    root = client.get_image_store_root_content()
    assert "sdk" in [f.store_relative_path for f in root.store_folders]

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as c:
        whole = c.get(f"/ImageStore/{KEY}/$/Content?api-version=6.0")
        assert whole.status_code == 200
        assert hashlib.sha256(whole.content).hexdigest() == hashlib.sha256(data).hexdigest()
        part = c.get(f"/ImageStore/{KEY}/$/Content?api-version=6.0", headers={"Range": "bytes=1000000-2999999"})
        assert part.status_code == 206 and part.headers["content-range"] == f"bytes 1000000-2999999/{SIZE}"
        assert hashlib.sha256(part.content).digest() == hashlib.sha256(data[1000000:3000000]).digest()

    client.delete_image_store_upload_session(sid)
    with pytest.raises(FabricErrorException) as err:
        client.get_image_store_upload_session_by_id(sid)
    assert err.value.response.status_code == 404
    # deleting the session keeps the committed file
    assert client.get_image_store_content(PATH).store_files[0].file_size == str(SIZE)

    client.copy_image_store_content(ImageStoreCopyDescription(remote_source="sdk", remote_destination="sdk-copy"))
    assert client.get_image_store_folder_size("sdk-copy").folder_size == str(SIZE)
    assert client.get_image_store_content("sdk-copy\\nested folder\\big.bin").store_files[0].file_size == str(SIZE)
    assert int(client.get_image_store_root_folder_size().folder_size) >= 2 * SIZE
    info = client.get_image_store_info()
    assert int(info.disk_info.capacity) > 0 and int(info.used_by_copy.used_space) >= 2 * SIZE

    client.delete_image_store_content("sdk-copy")
    with pytest.raises(FabricErrorException) as err:
        client.get_image_store_content("sdk-copy")
    assert (err.value.response.status_code, err.value.error.error.code) == (404, "FABRIC_E_FILE_NOT_FOUND")


def test_small_files_copy_and_delete(server: ServerProcess, token: str) -> None:
    client = sdk(server, token)
    client.upload_file("pkg\\small.txt", content=b"hello image store")
    client.upload_file("pkg\\_.dir", content=b"")
    listing = client.get_image_store_content("pkg")
    sizes = {f.store_relative_path: f.file_size for f in listing.store_files}
    assert sizes == {"pkg\\small.txt": "17", "pkg\\_.dir": "0"}
    assert listing.store_files[0].file_version.version_number
    client.copy_image_store_content(ImageStoreCopyDescription(remote_source="pkg\\small.txt",
                                                              remote_destination="pkg2\\small.txt"))
    assert client.get_image_store_folder_size("pkg2").folder_size == "17"
    client.delete_image_store_content("pkg\\small.txt")
    assert [f.store_relative_path for f in client.get_image_store_content("pkg").store_files] == ["pkg\\_.dir"]
    client.delete_image_store_content("never-existed")  # deleting a missing path succeeds, as on the runtime


def test_zero_byte_file_through_a_session(server: ServerProcess, token: str) -> None:
    client = sdk(server, token)
    sid = str(uuid.uuid4())
    client.upload_file_chunk("empty\\zero.bin", sid, "bytes 0-0/0", content=b"")
    assert ranges(client.get_image_store_upload_session_by_id(sid).upload_sessions[0]) == []
    client.commit_image_store_upload_session(sid)
    assert client.get_image_store_content("empty\\zero.bin").store_files[0].file_size == "0"


def test_unknown_things_raise_fabric_errors_not_type_errors(server: ServerProcess, token: str) -> None:
    """The runtime's empty 204/404 bodies make this SDK raise TypeError; chunkd answers FabricError JSON."""
    client = sdk(server, token)
    unknown = str(uuid.uuid4())
    with pytest.raises(FabricErrorException) as err:
        client.get_image_store_upload_session_by_id(unknown)
    assert (err.value.response.status_code, err.value.error.error.code) == (404, "FABRIC_E_FILE_NOT_FOUND")
    with pytest.raises(FabricErrorException) as err:
        client.get_image_store_content("no\\such\\file")
    assert err.value.response.status_code == 404
    with pytest.raises(FabricErrorException) as err:
        client.commit_image_store_upload_session(unknown)
    assert (err.value.response.status_code, err.value.error.error.code) == (400, "E_INVALIDARG")
    with pytest.raises(FabricErrorException) as err:
        client.delete_image_store_upload_session(unknown)
    assert err.value.response.status_code == 404
    assert client.get_image_store_upload_session_by_path("no\\sessions\\here").upload_sessions == []


def test_read_only_token_cannot_write(server: ServerProcess) -> None:
    client = sdk(server, server.token("--roles", "ImageStore.Read"))
    client.get_image_store_root_content()  # reading is allowed
    with pytest.raises(FabricErrorException) as err:
        client.upload_file("ro.txt", content=b"x")
    assert (err.value.response.status_code, err.value.error.error.code) == (403, "E_ACCESSDENIED")


def test_chunk_bigger_than_a_buffer_in_one_request(server: ServerProcess, token: str) -> None:
    """One 20 MiB chunk (bigger than the gateway's buffers) then a 1-byte tail."""
    client = sdk(server, token)
    data = os.urandom(20 * MIB + 1)
    sid = str(uuid.uuid4())
    client.upload_file_chunk("one\\big.bin", sid, f"bytes 20971520-20971520/{len(data)}", content=data[-1:])
    client.upload_file_chunk("one\\big.bin", sid, f"bytes 0-20971519/{len(data)}", content=data[:-1])
    client.commit_image_store_upload_session(sid)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/ImageStore/one/big.bin/$/Content?api-version=6.0").content == data
