"""The admin API's OpenAPI document: it lists exactly the routes the server has, and a bounded schemathesis
run against a real server finds no 5xx and no response outside the document. Plus the endpoints the
dashboard added: ``/summary`` (store-wide totals) and the ``owner`` filter, with their visibility rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from chunkd.protocols.admin import PREFIX
from chunkd.server.app import create_app
from chunkd.settings import Settings
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("admin-openapi") / "data", []).start(timeout=120)
    yield proc
    proc.stop()


def tus_create(server: ServerProcess, token: str, length: int, name: str) -> str:
    import base64
    meta = "filename " + base64.b64encode(name.encode()).decode()
    r = httpx.post(server.url + "/files/", headers={"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0",
                                                   "Upload-Length": str(length), "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("/", 1)[1]


def test_document_lists_exactly_the_admin_routes(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"))
    served: set[tuple[str, str]] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.path.startswith(PREFIX + "/"):
            # the 405 catch-alls list every other method; a real route takes GET or DELETE
            methods = set(route.methods or ()) - {"HEAD"}
            if methods <= {"GET", "DELETE"}:
                served |= {(route.path, m.lower()) for m in methods}
    import anyio

    async def fetch() -> dict[str, object]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.get(f"{PREFIX}/openapi.json")
            assert r.status_code == 200
            return dict(r.json())
    document = anyio.run(fetch)
    documented = {(path, method) for path, ops in document["paths"].items()  # type: ignore[attr-defined]
                  for method in ops}
    assert served == documented
    assert len(served) >= 6  # sessions list/get/delete, stats, summary, openapi.json


def test_summary_counts_from_the_store_and_respects_owners(server: ServerProcess) -> None:
    alice, bob = server.token("--app", "alice", "--roles", "Tus.ReadWrite"), server.token("--app", "bob",
                                                                                        "--roles", "Tus.ReadWrite")
    admin = server.token()
    tus_create(server, alice, 10, "a.bin")
    sid = tus_create(server, bob, 7, "b.bin")
    httpx.patch(f"{server.url}/files/{sid}", content=b"abc", headers={
        "Authorization": f"Bearer {bob}", "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"}).raise_for_status()

    def get(token: str, path: str) -> httpx.Response:
        return httpx.get(server.url + PREFIX + path, headers={"Authorization": f"Bearer {token}"})

    own = get(bob, "/summary").json()
    assert own["scope"] == "own" and own["bytesReceived"] == 3 and own["bytesExpected"] == 7
    assert own["sessions"] == {"tus": {"open": 1}}
    assert get(bob, "/summary?all=true").status_code == 403  # not Chunkd.Admin
    everyone = get(admin, "/summary?all=true").json()
    assert everyone["bytesReceived"] >= 3 and everyone["sessions"]["tus"]["open"] >= 2
    assert get(admin, "/summary?all=maybe").json()["error"]["code"] == "invalidRequest"
    # owner narrows an admin's all=true; for anyone else it cannot widen their view
    bob_key = get(bob, "/sessions").json()["sessions"][0]["owner"]
    narrowed = get(admin, f"/sessions?all=true&owner={bob_key}").json()["sessions"]
    assert [s["id"] for s in narrowed] == [sid] and narrowed[0]["name"] == "b.bin"
    assert [s["name"] for s in get(alice, f"/sessions?owner={bob_key}").json()["sessions"]] == ["a.bin"]


def test_other_methods_get_405_with_allow_in_the_admin_format(server: ServerProcess) -> None:
    r = httpx.post(server.url + PREFIX + "/stats")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert r.json()["error"]["code"] == "methodNotAllowed"  # not the blob account's XML
    r = httpx.put(server.url + PREFIX + "/sessions/x")
    assert r.status_code == 405 and "DELETE" in r.headers["allow"]


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(server: ServerProcess,
                                                                         tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is in the test extras"
    token = server.token()
    tus_create(server, token, 5, "fuzz.bin")  # something for list / get / delete to find
    out = subprocess.run([st, "run", f"{server.url}{PREFIX}/openapi.json", "-H", f"Authorization: Bearer {token}",
                          "--checks", "all", "--max-examples", "10", "--max-time", "8", "--seed", "1",
                          "--no-color", "--generation-database", "none", "--request-timeout", "10"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", out.stdout), out.stdout[-2000:]
    assert " 500 " not in out.stdout and "Internal" not in server.log()


def test_cli_sessions_list_shows_names_takes_protocol_names_and_shows_error_codes(server: ServerProcess) -> None:
    token = server.token("--app", "cli-names", "--roles", "Tus.ReadWrite")
    tus_create(server, token, 4, "listed-by-cli.txt")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chunkd.cli.main", "sessions", *args, "--server", server.url,
                               "--token", token], capture_output=True, text=True, timeout=60,
                              env={**__import__("os").environ, "COLUMNS": "250"})
    assert "listed-by-cli.txt" in cli("list", "--family", "tus").stdout
    assert "listed-by-cli.txt" not in cli("list", "--family", "sf").stdout  # sf = servicefabric, not ignored
    shown = cli("show", "no-such-session")
    assert shown.returncode == 1 and "HTTP 404 notFound: " in shown.stderr and "{" not in shown.stderr
