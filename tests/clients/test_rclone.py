"""rclone (Debian's package; its azureblob backend is the Azure Go SDK) uses an Industry Data sessionUrl as its
``sas_url`` unchanged: copy (single and chunked uploads), ls, check, cat, delete."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.protocols.industry_data.helpers import create_connector, split_sas, start_server, upload_session
from tests.serverproc import ServerProcess

RCLONE = shutil.which("rclone")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(RCLONE is None, reason="rclone is not installed: run scripts/clients/rclone.sh")]
BIG = 20 << 20  # above the 4 MiB / 8 MiB chunk sizes, so rclone stages blocks and commits a list


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory, "--no-auth")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("rclone-src")
    (src / "big.bin").write_bytes(os.urandom(BIG))
    (src / "orgs.csv").write_bytes(b"sourcedId,name,type\n1,North High,school\n")
    (src / "sub").mkdir()
    (src / "sub" / "users.csv").write_text("sourcedId,username\n1,zo\u00eb\n", encoding="utf-8")
    return src


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Rclone:
    """rclone with one azureblob remote ``cd`` whose sas_url is the session URL (environment only, an empty
    config file, no network beyond the server)."""

    def __init__(self, session_url: str, home: Path) -> None:
        config = home / "rclone.conf"
        config.write_text("")
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "RCLONE_CONFIG": str(config),
                    "RCLONE_CONFIG_CD_TYPE": "azureblob", "RCLONE_CONFIG_CD_SAS_URL": session_url}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        assert RCLONE is not None
        out = subprocess.run([RCLONE, "--retries", "1", "--low-level-retries", "1", *args], env=self.env,
                             capture_output=True, timeout=300)
        if check and out.returncode != 0:
            pytest.fail(f"rclone {' '.join(args)} failed ({out.returncode}):\n{out.stderr.decode(errors='replace')}")
        return out


def _block_sizes(session_url: str, blob: str) -> list[int]:
    url, sas = split_sas(session_url)
    r = httpx.get(f"{url}/{blob}", params={**sas, "comp": "blocklist", "blocklisttype": "committed"})
    assert r.status_code == 200, r.text
    return [int(n) for n in re.findall(r"<Size>(\d+)</Size>", r.text)]


def test_rclone_copy_ls_check_cat_delete(server: ServerProcess, files: Path, tmp_path: Path) -> None:
    session = upload_session(server.url, create_connector(server.url)["id"])
    url, sas = split_sas(session["sessionUrl"])
    assert url == f"{server.url}/chunkd/{session['containerId']}"
    rclone = Rclone(session["sessionUrl"], tmp_path)
    remote = f"cd:{session['containerId']}"  # a container SAS: rclone names the container in the path
    version = rclone("version").stdout.decode().splitlines()[0]
    assert version.startswith("rclone v")

    rclone("copy", str(files), f"{remote}/plain")
    rclone("copy", "--azureblob-chunk-size", "8M", "--azureblob-upload-concurrency", "4", str(files),
           f"{remote}/chunked")
    # both uploads of big.bin were chunked: 4 MiB blocks by default, 8 MiB ones with the flags
    assert _block_sizes(session["sessionUrl"], "plain/big.bin") == [4 << 20] * 5
    assert _block_sizes(session["sessionUrl"], "chunked/big.bin") == [8 << 20, 8 << 20, 4 << 20]

    listing = rclone("ls", remote).stdout.decode()
    got = sorted((line.split(None, 1)[1], int(line.split(None, 1)[0])) for line in listing.splitlines())
    sizes = {p.relative_to(files).as_posix(): p.stat().st_size for p in files.rglob("*") if p.is_file()}
    assert got == sorted((f"{top}/{name}", size) for top in ("chunked", "plain") for name, size in sizes.items())
    for top in ("plain", "chunked"):
        check = rclone("check", str(files), f"{remote}/{top}")
        assert b"0 differences found" in check.stderr
    # every byte, read back by rclone and by plain HTTP
    for name in sizes:
        expected = (files / name).read_bytes()
        assert _sha(rclone("cat", f"{remote}/chunked/{name}").stdout) == _sha(expected)
        r = httpx.get(f"{url}/plain/{name}", params=sas)
        assert r.status_code == 200 and _sha(r.content) == _sha(expected)
    # a changed local file is a difference rclone check reports
    changed = tmp_path / "changed"
    shutil.copytree(files, changed)
    (changed / "orgs.csv").write_bytes(b"sourcedId,name,type\n2,South High,school\n")
    assert rclone("check", str(changed), f"{remote}/plain", check=False).returncode != 0

    rclone("delete", f"{remote}/plain")
    left = rclone("ls", remote).stdout.decode()
    assert "plain/" not in left and left.count("chunked/") == len(sizes)
    assert httpx.head(f"{url}/plain/big.bin", params=sas).status_code == 404
