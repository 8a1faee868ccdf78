"""The web dashboard end to end: a real ``chunkd serve``, Debian's chromium, a tus upload sent in steps from
Python (so each step's progress must show), the page's own tus upload, and a delete through the UI that the
server must have carried out."""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.browser import CHROMIUM, chromium_page
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="scripts/clients/chromium.sh installs chromium")
KiB = 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("dashboard") / "data", []).start(timeout=120)
    yield proc
    proc.stop()


class Tus:
    def __init__(self, server: ServerProcess, token: str) -> None:
        self.base = server.url + "/files/"
        self.h = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}

    def create(self, name: str, length: int) -> str:
        meta = "filename " + base64.b64encode(name.encode()).decode()
        r = httpx.post(self.base, headers={**self.h, "Upload-Length": str(length), "Upload-Metadata": meta})
        assert r.status_code == 201, r.text
        return str(r.headers["location"].rsplit("/", 1)[1])

    def patch(self, sid: str, offset: int, data: bytes) -> None:
        r = httpx.patch(self.base + sid, content=data, headers={
            **self.h, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text


def until(check: Any, timeout: float, what: str) -> None:
    """Poll ``check`` from Python: Playwright's wait_for_function evaluates strings, which the page's CSP
    (no 'unsafe-eval') rightly refuses, and the test must run under the real CSP."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"the page never showed {what}"
        time.sleep(0.1)


def row_bytes(page: Any, sid: str) -> int:
    return int(page.get_attribute(f'tr[data-id="{sid}"] td[data-bytes]', "data-bytes"))


def bar_width(page: Any, sid: str) -> float:
    """Share of the row's bar painted as received, as the browser laid it out."""
    return float(page.evaluate("""sid => {
        const bar = document.querySelector(`tr[data-id="${sid}"] .bar`);
        const w = [...bar.children].reduce((n, i) => n + i.getBoundingClientRect().width, 0);
        return w / bar.getBoundingClientRect().width; }""", sid))


def test_dashboard_shows_progress_uploads_and_deletes(server: ServerProcess, tmp_path: Path) -> None:
    token = server.token()
    tus = Tus(server, token)
    size = 96 * KiB
    data = os.urandom(size)
    sid = tus.create("watched.bin", size)
    with chromium_page() as page:
        page.goto(server.url + "/dashboard")
        page.fill("#token", token)
        page.click("#auth button[type=submit]")
        page.wait_for_selector(f'tr[data-id="{sid}"]')
        assert page.text_content(f'tr[data-id="{sid}"] td.name') == "watched.bin"
        assert row_bytes(page, sid) == 0
        # two steps of the upload, each has to reach the page: bytes and the painted range
        for offset, end in ((0, size // 3), (size // 3, 2 * size // 3)):
            tus.patch(sid, offset, data[offset:end])
            until(lambda end=end: row_bytes(page, sid) == end, 15, f"{end} bytes received")
            assert abs(bar_width(page, sid) - end / size) < 0.02
        assert "tus" in page.text_content("#counts")
        assert "watched.bin" in page.text_content("#expiring")

        # the page's own tus upload
        local = tmp_path / "from-browser.txt"
        local.write_bytes(os.urandom(300 * KiB))  # > one 256 KiB PATCH: the loop has to continue
        page.set_input_files("#file", str(local))
        page.click("#upload")
        until(lambda: "done" in (page.text_content("#upload-status") or ""), 20, "the browser upload done")
        listed = httpx.get(server.url + "/chunkd/v1/sessions", headers={"Authorization": f"Bearer {token}"},
                           params={"limit": "100"}).json()["sessions"]
        mine = [s for s in listed if s["name"] == "from-browser.txt"]
        assert len(mine) == 1 and mine[0]["received"] == 300 * KiB and mine[0]["state"] == "committed"
        stored = httpx.get(server.url + "/files/" + mine[0]["id"], headers=tus.h)
        assert stored.content == local.read_bytes()

        # delete through the UI: the row goes and the server no longer has the session
        page.on("dialog", lambda dialog: dialog.accept())
        page.click(f'tr[data-id="{sid}"] button.delete')
        page.wait_for_selector(f'tr[data-id="{sid}"]', state="detached", timeout=15_000)
        gone = httpx.get(f"{server.url}/chunkd/v1/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
        assert gone.status_code == 404
        assert page.text_content("#errors") == ""  # no failed request along the way


def test_dashboard_without_a_valid_token_shows_the_protocol_error(server: ServerProcess) -> None:
    with chromium_page() as page:
        page.goto(server.url + "/dashboard/")
        page.fill("#token", "not-a-token")
        page.click("#auth button[type=submit]")
        until(lambda: "401" in (page.text_content("#errors") or ""), 15, "the 401")
        assert "unauthenticated" in page.text_content("#errors")
        assert page.evaluate("location.href").endswith("/dashboard/")  # the token never goes in the URL
