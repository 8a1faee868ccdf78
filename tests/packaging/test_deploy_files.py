"""The deployment files parse and say what docs/deployment.md promises. No Docker engine or systemd runs here:
the Dockerfile is checked by a small parser (instructions, the files it copies, a non-root user, a volume, a
/healthz health check), the unit with ``systemd-analyze verify`` when present. deploy/nginx.conf runs for real in
tests/e2e/test_nginx_proxy.py."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]
INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "ADD", "WORKDIR", "USER", "VOLUME", "EXPOSE", "HEALTHCHECK",
                "ENTRYPOINT", "CMD", "LABEL", "STOPSIGNAL", "SHELL", "ONBUILD"}


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        assert word.upper() == word and word in INSTRUCTIONS, f"unknown instruction {word!r}"
        out.append((word, rest.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return out


def test_dockerfile() -> None:
    steps = dockerfile(ROOT / "Dockerfile")
    froms = [args for word, args in steps if word == "FROM"]
    assert froms and all(f.split()[0] == "python:3.11-slim" for f in froms)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("VOLUME", '["/data"]') in final
    health = [args for word, args in final if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0]
    probe = json.loads(health[0].split(" CMD ", 1)[1])  # exec form: a JSON array
    assert probe[:2] == ["python", "-c"]
    compile(probe[2], "HEALTHCHECK", "exec")  # the probe is valid Python (the image has no curl)
    assert [args for word, args in final if word == "ENTRYPOINT"] == ['["chunkd"]']
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip()
               and not p.startswith("#")]
    for word, args in steps:
        if word == "COPY" and "--from=" not in args:
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source


def test_systemd_unit() -> None:
    unit = (ROOT / "deploy" / "chunkd.service").read_text()
    settings = {line.partition("=")[0] for line in unit.splitlines() if "=" in line and not line.startswith("#")}
    for wanted in ("ExecStart", "User", "NoNewPrivileges", "ProtectSystem", "ReadWritePaths", "StateDirectory",
                   "PrivateTmp", "CapabilityBoundingSet", "LimitNOFILE"):
        assert wanted in settings, wanted
    assert "ProtectSystem=strict" in unit and "ReadWritePaths=/var/lib/chunkd" in unit
    assert "CHUNKD_DATA_DIR=/var/lib/chunkd" in unit
    if shutil.which("systemd-analyze"):
        out = subprocess.run(["systemd-analyze", "verify", str(ROOT / "deploy" / "chunkd.service")],
                             capture_output=True, text=True, timeout=60)
        # the only complaint allowed: this machine has no /opt/chunkd installation
        problems = [line for line in (out.stdout + out.stderr).splitlines()
                    if line.strip() and "/opt/chunkd/bin/chunkd is not executable" not in line]
        assert problems == [], problems
