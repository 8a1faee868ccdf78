"""One configuration reference: every setting is a flag with its variable and default, docs/configuration.md is
current, the TOML file's precedence, one-line errors, unknown-name warnings, and the start-up line after bind."""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from chunkd.settings import Settings
from tests.serverproc import free_port

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "chunkd.cli.main"]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUNKD_")}
    return {**env, **extra}


def _serve_fails(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "serve", "--data-dir", str(tmp_path / "data"), *args], capture_output=True,
                          text=True, timeout=60, env=_clean_env(**env))


def test_help_lists_every_setting_with_its_variable_and_default() -> None:
    for columns in ("100", "80"):
        out = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True, timeout=60,
                             env=_clean_env(COLUMNS=columns))
        assert out.returncode == 0, out.stderr
        text = " ".join(out.stdout.split())  # wrapped lines joined
        for field in Settings.model_fields:
            flag = "--force" if field == "force_no_auth" else "--" + field.replace("_", "-")
            assert flag in text and f"[env: CHUNKD_{field.upper()}; default: " in text, (columns, field)
        assert "s3://BUCKET[/PREFIX]?..." in text  # Rich markup used to eat it (and crash --help)


def test_configuration_doc_is_current_and_lists_every_setting() -> None:
    render = runpy.run_path(str(ROOT / "scripts" / "configuration_doc.py"))["render"]
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == render(), "docs/configuration.md is stale: run .venv/bin/python scripts/configuration_doc.py"
    for field in Settings.model_fields:
        assert f"| `{field}` |" in doc and f"`CHUNKD_{field.upper()}`" in doc


def test_bad_environment_value_is_one_line_and_exit_2_and_unknown_names_warn(tmp_path) -> None:
    out = _serve_fails(tmp_path, CHUNKD_SESSION_TTL="soon", CHUNKD_PROT="1", CHUNKD_TOKEN="client's")
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert lines == ["warning: CHUNKD_PROT is not a chunkd setting; it is ignored (did you mean 'CHUNKD_PORT'?)",
                     "Error: Invalid value for CHUNKD_SESSION_TTL: Input should be a valid number, unable to parse "
                     "string as a number"], out.stderr
    flag = _serve_fails(tmp_path, "--log-level", "loud")
    assert flag.returncode == 2 and flag.stderr.strip().splitlines() == [
        "Error: Invalid value for '--log-level': must be one of critical, error, warning, info, debug, trace"]
    scheme = _serve_fails(tmp_path, CHUNKD_STORAGE="ftp://x")
    assert scheme.returncode == 2 and len(scheme.stderr.strip().splitlines()) == 1 and "ftp" in scheme.stderr


def test_config_file_unknown_key_and_bad_value_are_one_line_errors(tmp_path) -> None:
    conf = tmp_path / "chunkd.toml"
    conf.write_text('session_ttl = 60\nacess_log = true\n')
    out = _serve_fails(tmp_path, "--config", str(conf))
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"Error: config file {conf}: unknown setting 'acess_log' (did you mean 'access_log'?)"]
    conf.write_text('max-size = "big"\n')
    out = _serve_fails(tmp_path, CHUNKD_CONFIG=str(conf))
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "Error: Invalid value for 'max_size' in the config file: Input should be a valid integer, unable to parse "
        "string as an integer"]
    conf.write_text("port = \n")
    out = _serve_fails(tmp_path, "--config", str(conf))
    assert out.returncode == 2 and "not valid TOML" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_flag_beats_env_beats_file_and_the_startup_line_comes_once_the_port_is_bound(tmp_path) -> None:
    port = free_port()
    conf = tmp_path / "chunkd.toml"
    conf.write_text(f'port = {port}\nno-auth = true\nmax_size = 100\ntus_max_size = 1000\n'
                    'cors_origins = ["https://a.example", "https://b.example"]\n')
    env = _clean_env(CHUNKD_CONFIG=str(conf), CHUNKD_MAX_SIZE="200", CHUNKD_TUS_MAX_SIZE="150")
    proc = subprocess.Popen([*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--tus-max-size", "120"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True)
    try:
        assert proc.stderr is not None
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, f"server exited: {''.join(seen)}"
            seen.append(line)
            if line.startswith("chunkd listening on"):
                break
        # printed after bind: a connection succeeds at once, with no retry (it waits in the backlog)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert f"http://127.0.0.1:{port} " in line and "auth=none" in line  # port and no-auth from the file
        options = httpx.options(f"http://127.0.0.1:{port}/files/", headers={"Origin": "https://b.example"},
                                timeout=30)
        # tus_max_size: flag 120 > env 150 > file 1000; max_size: env 200 > file 100 (else min() gives 100)
        assert options.headers["Tus-Max-Size"] == "120"
        assert options.headers.get("Access-Control-Allow-Origin") == "https://b.example"  # a TOML list
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(20)
        if proc.stderr is not None:
            proc.stderr.close()


def _doc_example() -> str:
    """The TOML example of docs/configuration.md, as an operator would copy it."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    return doc.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_documented_example_file_loads_and_serves_json_logs(tmp_path) -> None:
    from chunkd.config_file import read_config_file

    conf = tmp_path / "chunkd.toml"
    conf.write_text(_doc_example())
    values = Settings(**read_config_file(conf, Settings.model_fields))
    assert values.host == "0.0.0.0" and values.metadata.startswith("postgresql://") and values.access_log
    assert values.log_format == "json" and values.cors_origins == "https://app.example.com"
    # served for real, with what this machine lacks overridden by flags (a flag beats the file)
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*CLI, "serve", "--config", str(conf), "--host", "127.0.0.1", "--port", str(port),
                                 "--data-dir", str(tmp_path / "data"), "--metadata", "sqlite"], stderr=log,
                                stdout=subprocess.DEVNULL, env=_clean_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "chunkd listening on" not in log_path.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.1)
        made = httpx.post(f"http://127.0.0.1:{port}/files/", headers={"Tus-Resumable": "1.0.0",
                          "Upload-Length": "5", "Origin": "https://app.example.com"}, timeout=30)
        assert made.status_code == 401  # auth stays on: the token is missing
        assert made.headers.get("Access-Control-Allow-Origin") == "https://app.example.com"
        while '"chunkd.access"' not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(20)
    lines = log_path.read_text().splitlines()
    # docs/deployment.md#logs: every line one JSON object, but the start-up line, with these fields
    assert [line for line in lines if not line.startswith("{")] == [next(x for x in lines if "listening" in x)]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert all({"time", "level", "logger", "pid", "message"} <= set(r) for r in records), records
    access = next(r for r in records if r["logger"] == "chunkd.access")
    assert set(access) == {"time", "level", "logger", "pid", "message", "client", "method", "path", "status",
                           "bytes_in", "bytes_out", "duration_ms", "principal", "request_id"}
    assert (access["method"], access["path"], access["status"], access["level"]) == ("POST", "/files/", 401, "info")


def test_an_unreachable_metadata_database_is_one_line_without_its_password(tmp_path) -> None:
    dsn = f"postgresql://chunkd:SECRETPW@127.0.0.1:{free_port()}/chunkd"  # nothing listens there
    out = _serve_fails(tmp_path, "--metadata", dsn)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("Error: cannot open the stores: OperationalError: ") and "SECRETPW" not in out.stderr
