"""``chunkd upload`` and ``chunkd sessions`` as processes against a real ``chunkd serve`` (every API family),
against @tus/server, through a fault-injecting TCP proxy, and killed with SIGKILL half-way."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkd.auth.permissions import ALL_ROLES
from chunkd.auth.tokens import issue_token, load_or_create_secret
from tests.e2e.tcpproxy import TcpProxy
from tests.serverproc import ServerProcess, free_port

pytestmark = pytest.mark.slow
MiB = 1 << 20
TUS_SERVER_DIR = Path(__file__).parents[1] / "clients" / "tus_server"
BETA = "/beta/external/industryData"


def write_random(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, 4 * MiB)
            fh.write(os.urandom(n))
            left -= n
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while piece := fh.read(MiB):
            h.update(piece)
    return h.hexdigest()


def sha256_url(url: str, headers: dict[str, str] | None = None) -> str:
    h = hashlib.sha256()
    with httpx.stream("GET", url, headers=headers or {}, timeout=60) as r:
        assert r.status_code == 200, r.read()
        for piece in r.iter_bytes():
            h.update(piece)
    return h.hexdigest()


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chunkd.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def results(out: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("upcli") / "data").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("files")
    return {"empty": write_random(d / "empty.pdf", 0), "one": write_random(d / "one.pdf", 1),
            "big": write_random(d / "big.pdf", 100 * MiB), "mid": write_random(d / "mid.pdf", 12 * MiB + 3)}


def make_token(server: ServerProcess, **kw: Any) -> str:
    """What ``chunkd token`` prints, without a process per token."""
    return issue_token(load_or_create_secret(server.data_dir), **kw)


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return make_token(server, roles=list(ALL_ROLES))


def upload(server: ServerProcess, *args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return cli("upload", *args, "--data-dir", str(server.data_dir), "--state-dir", str(state), "--json")


def test_service_fabric_three_files(server: ServerProcess, files: dict[str, Path], token: str,
                                    tmp_path: Path) -> None:
    paths = [files["empty"], files["one"], files["big"]]
    out = upload(server, *map(str, paths), f"{server.url}/ImageStore/e2e/", "--parallel", "4", state=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = results(out)
    assert [r["size"] for r in rows] == [0, 1, 100 * MiB]
    auth = {"Authorization": f"Bearer {token}"}
    for path, row in zip(paths, rows, strict=True):
        assert row["sha256"] == sha256_file(path)
        assert sha256_url(f"{server.url}/ImageStore/e2e/{path.name}/$/Content?api-version=6.0", auth) == row["sha256"]


def test_tus_three_files(server: ServerProcess, files: dict[str, Path], token: str, tmp_path: Path) -> None:
    paths = [files["empty"], files["one"], files["big"]]
    out = upload(server, *map(str, paths), f"{server.url}/files/", "--parallel", "4", "--verify", state=tmp_path)
    assert out.returncode == 0, out.stderr
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    for path, row in zip(paths, results(out), strict=True):
        assert row["verified"] is True
        assert sha256_url(row["location"], auth) == row["sha256"] == sha256_file(path)


def _print_document(server: ServerProcess, token: str, printer: str) -> str:
    r = httpx.post(f"{server.url}/v1.0/print/printers/{printer}/jobs", json={"configuration": {}},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    job = r.json()
    return f"{server.url}/v1.0/print/printers/{printer}/jobs/{job['id']}/documents/{job['documents'][0]['id']}"


def test_graph_print_three_files(server: ServerProcess, files: dict[str, Path], token: str, tmp_path: Path) -> None:
    r = httpx.post(f"{server.url}/v1.0/print/printers", json={"displayName": "Office"},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    printer = r.json()["id"]
    for name in ("empty", "one", "mid"):
        doc = _print_document(server, token, printer)
        out = upload(server, str(files[name]), doc, "--parallel", "4", "--chunk-size", "1M", "--verify",
                     state=tmp_path)
        assert out.returncode == 0, out.stderr
        row = results(out)[0]
        assert row["sha256"] == sha256_file(files[name]) and row["verified"] is True
        r = httpx.get(doc, headers={"Authorization": f"Bearer {token}"})
        assert r.json()["size"] == files[name].stat().st_size
        if name != "empty":
            assert sha256_url(doc + "/$value", {"Authorization": f"Bearer {token}"}) == row["sha256"]


def test_blob_container_sas_three_files(server: ServerProcess, files: dict[str, Path], token: str,
                                        tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    body = {"@odata.type": "#microsoft.graph.industryData.azureDataLakeConnector", "displayName": "e2e"}
    connector = httpx.post(f"{server.url}{BETA}/dataConnectors", json=body, headers=auth).json()["id"]
    session = httpx.get(f"{server.url}{BETA}/dataConnectors/{connector}/microsoft.graph.industryData."
                        "azureDataLakeConnector/getUploadSession", headers=auth).json()
    sas_url = session["sessionUrl"]
    paths = [files["empty"], files["one"], files["mid"]]
    out = upload(server, *map(str, paths), sas_url, "--parallel", "4", "--chunk-size", "2M", "--verify",
                 state=tmp_path)
    assert out.returncode == 0, out.stderr
    container, _, sas = sas_url.partition("?")
    for path, row in zip(paths, results(out), strict=True):
        assert row["location"] == f"{container}/{path.name}" and row["verified"] is True
        assert sha256_url(f"{container}/{path.name}?{sas}") == row["sha256"] == sha256_file(path)


def _stats(server: ServerProcess, token: str, session_id: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/chunkd/v1/sessions/{session_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _find_session(server: ServerProcess, token: str, key: str) -> str | None:
    r = httpx.get(f"{server.url}/chunkd/v1/sessions", params={"family": "servicefabric", "limit": "1000"},
                  headers={"Authorization": f"Bearer {token}"})
    for s in r.json()["sessions"]:
        if s["key"] == key:
            return str(s["id"])
    return None


def test_resume_after_sigkill_sends_only_the_missing_ranges(server: ServerProcess, token: str,
                                                            tmp_path: Path) -> None:
    path = write_random(tmp_path / "resume.bin", 32 * MiB)
    proxy = TcpProxy(server.port, rate=12 * MiB)  # slow enough to stop half-way
    target = f"http://127.0.0.1:{proxy.port}/ImageStore/resume/resume.bin"
    args = [sys.executable, "-m", "chunkd.cli.main", "upload", str(path), target, "--parallel", "2",
            "--chunk-size", "1M", "--data-dir", str(server.data_dir), "--state-dir", str(tmp_path / "state"), "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        sid = None
        while time.monotonic() < deadline:
            sid = sid or _find_session(server, token, "resume/resume.bin")
            if sid and _stats(server, token, sid)["received"] >= 16 * MiB:
                break
            time.sleep(0.02)
        assert sid is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    before = _stats(server, token, sid)
    assert 0 < before["received"] < 32 * MiB and before["missingRanges"]
    shown = cli("sessions", "show", sid, "--server", server.url, "--data-dir", str(server.data_dir))
    assert shown.returncode == 0 and "█" in shown.stdout and "·" in shown.stdout

    proxy.rate = None  # same target URL (the resume key), full speed
    try:
        again = subprocess.run(args, capture_output=True, text=True, timeout=120)
    finally:
        proxy.close()
    assert again.returncode == 0, again.stderr
    row = results(again)[0]
    assert row["resumed_from"] >= before["received"]
    assert row["sent"] == 32 * MiB - row["resumed_from"]
    assert row["sha256"] == sha256_file(path)
    after = _stats(server, token, sid)
    assert after["state"] == "committed" and after["missingRanges"] == []
    # the server's own count of request-body bytes it accepted for this session: every byte exactly once
    assert after["transfer"]["body_bytes"] == 32 * MiB
    assert after["transfer"]["new_bytes"] == 32 * MiB
    assert after["transfer"]["duplicate_writes"] == 0


@pytest.mark.parametrize("family", ["sf", "tus"])
def test_uploads_survive_dropped_connections_and_delays(server: ServerProcess, token: str, files: dict[str, Path],
                                                        tmp_path: Path, family: str) -> None:
    proxy = TcpProxy(server.port, delay=0.002, drop_every=60)
    try:
        base = f"http://127.0.0.1:{proxy.port}"
        target = f"{base}/ImageStore/faults/mid.pdf" if family == "sf" else f"{base}/files/"
        out = upload(server, str(files["mid"]), target, "--parallel", "4", "--chunk-size", "512k", "--verify",
                     state=tmp_path)
    finally:
        proxy.close()
    assert out.returncode == 0, out.stderr
    row = results(out)[0]
    assert row["verified"] is True and row["sha256"] == sha256_file(files["mid"])
    assert proxy.drops > 0
    assert "mid.pdf: retrying in " in out.stderr  # each wait is shown: "retrying in 0.4 s (1/8): connection reset"


def test_a_stopped_server_fails_fast_with_a_clear_message(files: dict[str, Path], tmp_path: Path) -> None:
    """Nothing listens on the port: a few short retries, each shown, then one line naming the refused
    connection (not the whole 8-round budget of an upload the server has already answered)."""
    target = f"http://127.0.0.1:{free_port()}/files/"
    out = cli("upload", str(files["one"]), target, "--token", "t", "--state-dir", str(tmp_path), timeout=30)
    assert out.returncode == 1, out.stderr
    text = " ".join(out.stderr.split())  # rich wraps long lines when stderr is no terminal
    assert "retrying in" in text and "(1/3): connection refused" in text
    assert "connection refused (gave up after 4 attempts" in text and "is the server running" in text


def test_sessions_list_show_delete_and_owner_scope(server: ServerProcess, token: str, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    sid = "0f5c6c1e-8d7a-4c1b-9a55-2d0c7d9b1e01"
    r = httpx.put(f"{server.url}/ImageStore/abandoned.bin/$/UploadChunk?api-version=6.0&session-id={sid}",
                  content=b"x" * 10, headers={**auth, "Content-Range": "bytes 10-19/40"})
    assert r.status_code == 200, r.text
    common = ["--server", server.url, "--token", token]
    listed = cli("sessions", "list", *common, "--json")
    assert sid in [s["id"] for s in json.loads(listed.stdout)]
    shown = cli("sessions", "show", sid, *common)
    assert "missing 0-9, 20-39" in " ".join(shown.stdout.split())
    assert "name abandoned.bin" in " ".join(shown.stdout.split())
    # the table names the file; --family takes upload --protocol's names as well as the server's
    wide = {"COLUMNS": "200"}
    for family in ("sf", "servicefabric"):
        table = cli("sessions", "list", *common, "--family", family, env=wide)
        assert table.returncode == 0, table.stderr
        assert any(sid in line and "abandoned.bin" in line for line in table.stdout.splitlines()), table.stdout
    assert sid not in cli("sessions", "list", *common, "--family", "tus", env=wide).stdout
    # owner scope: another application sees nothing of it, and may not list everyone's sessions
    other = {"Authorization": f"Bearer {make_token(server, app='someone-else', roles=['ImageStore.Admin'])}"}
    api = f"{server.url}/chunkd/v1/sessions"
    assert httpx.get(f"{api}/{sid}", headers=other).status_code == 404
    assert httpx.delete(f"{api}/{sid}", headers=other).status_code == 404
    assert sid not in httpx.get(api, headers=other).text
    assert httpx.get(api, params={"all": "true"}, headers=other).status_code == 403
    assert sid in httpx.get(api, params={"all": "true"}, headers=auth).text  # Chunkd.Admin sees everyone's
    assert cli("sessions", "delete", sid, *common).returncode == 0
    assert httpx.get(f"{api}/{sid}", headers=auth).status_code == 404


def test_admin_api_refusals_stats_and_paging(server: ServerProcess, token: str) -> None:
    api = f"{server.url}/chunkd/v1"
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{api}/sessions").status_code == 401
    assert httpx.get(f"{api}/sessions", headers={"Authorization": "Bearer junk"}).json()["error"]["code"] == \
        "unauthenticated"
    assert httpx.get(f"{api}/sessions", params={"limit": "x"}, headers=auth).status_code == 400
    plain = {"Authorization": f"Bearer {make_token(server, app='plain', roles=['ImageStore.Admin'])}"}
    assert httpx.get(f"{api}/stats", headers=plain).status_code == 403
    stats = httpx.get(f"{api}/stats", headers=auth).json()
    assert stats["scope"] == "process" and stats["body_bytes"] >= stats["new_bytes"] >= 0
    for i in range(3):  # three sessions of the plain app, paged one by one
        sid = f"0f5c6c1e-8d7a-4c1b-9a55-2d0c7d9b1e1{i}"
        r = httpx.put(f"{server.url}/ImageStore/paging/{i}.bin/$/UploadChunk?api-version=6.0&session-id={sid}",
                      content=b"x", headers={**plain, "Content-Range": "bytes 0-0/2"})
        assert r.status_code == 200, r.text
    seen, after = [], ""
    while True:
        page = httpx.get(f"{api}/sessions", params={"limit": "1", "after": after}, headers=plain).json()
        seen += [s["id"] for s in page["sessions"]]
        if not page["next"]:
            break
        after = page["next"]
    assert seen == sorted(seen) and len(seen) == 3
    one = httpx.get(f"{api}/sessions/{seen[0]}", headers=plain).json()
    assert one["receivedRanges"] == [[0, 1]] and one["missingRanges"] == [[1, 2]]
    assert one["transfer"] == {"writes": 1, "body_bytes": 1, "new_bytes": 1, "duplicate_writes": 0}


def test_exit_codes(server: ServerProcess, files: dict[str, Path], tmp_path: Path) -> None:
    one = str(files["one"])
    assert upload(server, one, "http://127.0.0.1:1/nowhere/", state=tmp_path).returncode == 2  # ambiguous URL
    denied = cli("upload", one, f"{server.url}/ImageStore/x/one.pdf", "--token", "not-a-token", "--state-dir",
                 str(tmp_path))
    assert denied.returncode == 4, denied.stderr
    unreachable = cli("upload", one, f"http://127.0.0.1:{free_port()}/ImageStore/x/one.pdf", "--token", "t",
                      "--state-dir", str(tmp_path), "--retries", "1")
    assert unreachable.returncode == 1


@pytest.fixture(scope="module")
def tus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("node") is None or not (TUS_SERVER_DIR / "node_modules" / "@tus" / "server").is_dir():
        pytest.skip("run scripts/clients/tus-server.sh first")
    port = free_port()
    store = tmp_path_factory.mktemp("tusd-files")
    proc = subprocess.Popen(["node", "server.mjs", str(port), str(store)], cwd=TUS_SERVER_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening"), line
    yield f"http://127.0.0.1:{port}/files"
    proc.terminate()
    proc.wait(10)
    proc.stdout.close()


def test_tus_adapter_against_tus_node_server(tus_server: str, files: dict[str, Path], tmp_path: Path) -> None:
    paths = [files["empty"], files["one"], files["mid"]]
    out = cli("upload", *map(str, paths), tus_server, "--parallel", "4", "--chunk-size", "1M", "--verify",
              "--state-dir", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    for path, row in zip(paths, results(out), strict=True):
        assert row["verified"] is True and row["sha256"] == sha256_file(path)
        assert row["location"].startswith(tus_server + "/")
