"""concatenation and concatenation-unfinished: finals from relative and absolute URLs, made without copying."""

from __future__ import annotations

import os

import httpx

from tests.protocols.tus.conftest import TUS, Create, patch
from tests.serverproc import ServerProcess


def final(client: httpx.Client, *urls: str) -> httpx.Response:
    return client.post("/files/", headers={**TUS, "Upload-Concat": "final;" + " ".join(urls)})


def test_final_from_relative_and_absolute_urls(server: ServerProcess, client: httpx.Client, create: Create) -> None:
    parts = [os.urandom(n) for n in (1000, 1, 70000)]
    paths = [create(len(p), {"Upload-Concat": "partial"}) for p in parts]
    for path, data in zip(paths, parts, strict=True):
        assert patch(client, path, 0, data).status_code == 204
        assert client.head(path, headers=TUS).headers["upload-concat"] == "partial"
    r = final(client, paths[0], server.url + paths[1], paths[2])
    assert r.status_code == 201
    assert r.headers["upload-offset"] == str(71001)
    url = r.headers["location"]
    head = client.head(url, headers=TUS)
    assert head.headers["upload-length"] == head.headers["upload-offset"] == "71001"
    assert head.headers["upload-concat"].startswith("final;")
    assert [httpx.URL(u).path for u in head.headers["upload-concat"][6:].split()] == paths
    assert client.get(url).content == b"".join(parts)
    # the parts were consumed: they are finished, and a second final cannot reuse them
    assert final(client, paths[0]).status_code == 400


def test_final_declared_before_parts_finish(client: httpx.Client, create: Create) -> None:
    a, b = create(5, {"Upload-Concat": "partial"}), create(5, {"Upload-Concat": "partial"})
    assert patch(client, a, 0, b"hello").status_code == 204
    r = final(client, a, b)
    assert r.status_code == 201
    assert "upload-offset" not in r.headers
    url = r.headers["location"]
    head = client.head(url, headers=TUS)
    assert "upload-offset" not in head.headers and head.headers["upload-length"] == "10"
    assert client.get(url).status_code == 400
    assert patch(client, b, 0, b"world").status_code == 204  # completing the last part finishes the final
    head = client.head(url, headers=TUS)
    assert head.headers["upload-offset"] == "10"
    assert client.get(url).content == b"helloworld"


def test_final_naming_an_unfinished_partial_twice(server: ServerProcess, client: httpx.Client,
                                                   create: Create) -> None:
    part = create(4, {"Upload-Concat": "partial"})
    before = {s["id"] for s in client.get(f"{server.url}/chunkd/v1/sessions").json()["sessions"]}
    r = final(client, part, part)  # the same partial twice: legal, its bytes come twice
    assert r.status_code == 201, r.text  # not 423 (which made every retry leave an unreachable final behind)
    url = r.headers["location"]
    after = {s["id"] for s in client.get(f"{server.url}/chunkd/v1/sessions").json()["sessions"]}
    assert after - before == {url.rsplit("/", 1)[1]}  # exactly the final that got a Location
    assert patch(client, part, 0, b"abcd").status_code == 204
    assert client.head(url, headers=TUS).headers["upload-offset"] == "8"
    assert client.get(url).content == b"abcdabcd"


def test_final_needs_partial_uploads(client: httpx.Client, create: Create) -> None:
    plain = create(3)
    r = final(client, plain)
    assert r.status_code == 400 and r.text.startswith("ERR_INVALID_CONCAT")


def test_final_of_deferred_part_is_refused(client: httpx.Client, create: Create) -> None:
    part = create(None, {"Upload-Concat": "partial", "Upload-Defer-Length": "1"})
    assert final(client, part).status_code == 400


def test_final_is_terminated_like_any_upload(client: httpx.Client, create: Create) -> None:
    a = create(2, {"Upload-Concat": "partial"})
    patch(client, a, 0, b"ab")
    url = final(client, a).headers["location"]
    assert client.delete(url, headers=TUS).status_code == 204
    assert client.get(url).status_code == 410


def test_unfinished_finals_complete_across_two_worker_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    from tests.protocols.tus.conftest import start_server

    server = start_server(tmp_path, "--no-auth", "--workers", "2")
    try:
        finals: list[tuple[str, list[bytes]]] = []
        pending: list[tuple[str, bytes]] = []
        with httpx.Client(base_url=server.url) as c:
            for _ in range(6):
                parts = [os.urandom(n) for n in (3000, 5000, 7)]
                paths = []
                for data in parts:
                    r = c.post("/files/", headers={**TUS, "Upload-Length": str(len(data)), "Upload-Concat": "partial"})
                    paths.append(httpx.URL(r.headers["location"]).path)
                finals.append((final(c, *paths).headers["location"], parts))
                pending += list(zip(paths, parts, strict=True))

        def send(item: tuple[str, bytes]) -> int:
            with httpx.Client(base_url=server.url) as fresh:  # a new connection: either worker may take it
                return patch(fresh, item[0], 0, item[1]).status_code

        with ThreadPoolExecutor(6) as pool:
            assert set(pool.map(send, pending)) == {204}
        with httpx.Client() as c:
            for url, parts in finals:
                head = c.head(url, headers=TUS)
                assert head.headers["upload-offset"] == str(sum(map(len, parts)))
                assert c.get(url).content == b"".join(parts)
    finally:
        server.stop()
