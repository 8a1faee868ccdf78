"""What a user installs: ``chunkd --version`` and the wheel's package data (typing marker, dashboard, migration
template, licence), built from this checkout the way a release would be."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_version_option_prints_the_installed_version() -> None:
    out = subprocess.run([sys.executable, "-m", "chunkd.cli.main", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"chunkd {version('chunkd')}"


@pytest.mark.slow
def test_wheel_carries_package_data_and_licence(tmp_path: Path) -> None:
    if shutil.which("uv") is None:
        pytest.skip("uv is not installed (scripts/test installs it)")
    cmd = ["uv", "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)]
    if subprocess.run([*cmd, "--offline"], capture_output=True, timeout=180).returncode != 0:
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    (wheel,) = tmp_path.glob("chunkd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for wanted in ("chunkd/py.typed", "chunkd/server/dashboard/index.html", "chunkd/server/dashboard/dashboard.js",
                   "chunkd/server/dashboard/dashboard.css", "chunkd/metadata/migrations/script.py.mako",
                   "chunkd/metadata/migrations/versions/0001_initial.py", "chunkd/client/__init__.py"):
        assert wanted in names, wanted
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata or "License: MIT" in metadata
    assert "uvicorn[standard]" not in metadata and "websockets" not in metadata
