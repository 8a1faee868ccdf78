"""Pure helpers of the client and the CLI: protocol detection, target naming, sizes, the range bar, tokens."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
import typer

from chunkd.cli._upload_run import range_bar
from chunkd.cli.upload import parse_size, resolve_token
from chunkd.client import ConfigError, detect_protocol, expand, file_url


@pytest.mark.parametrize(("url", "protocol"), [
    ("http://h:19080/ImageStore/a/b.bin", "sf"),
    ("http://h/blob/acct/c1?sv=2025-11-05&sr=c&sp=w&sig=abc", "blob"),
    ("https://graph.microsoft.com/v1.0/print/printers/p/jobs/j/documents/d", "print"),
    ("http://h/files/", "tus"),
    ("http://h/files", "tus"),
])
def test_detect_protocol(url: str, protocol: str) -> None:
    assert detect_protocol(url) == protocol


def test_ambiguous_urls_need_a_protocol() -> None:
    with pytest.raises(ConfigError):
        detect_protocol("http://h/uploads/")
    with pytest.raises(ConfigError):
        detect_protocol("ftp://h/files/")


def test_targets_per_file(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "x.txt").write_text("x")
    (tmp_path / "d" / "a.txt").write_text("a")
    (tmp_path / "top.bin").write_text("t")
    jobs = list(expand([tmp_path / "top.bin", tmp_path / "d"]))
    assert [j.name for j in jobs] == ["top.bin", "d/a.txt", "d/sub/x.txt"]
    assert file_url("sf", "http://h/ImageStore/pkg", "d/a.txt", True) == "http://h/ImageStore/pkg/d/a.txt"
    assert file_url("sf", "http://h/ImageStore/pkg/f.bin", "top.bin", False) == "http://h/ImageStore/pkg/f.bin"
    assert file_url("sf", "http://h/ImageStore/pkg/", "top.bin", False) == "http://h/ImageStore/pkg/top.bin"
    assert file_url("tus", "http://h/files/", "d/a.txt", True) == "http://h/files/"
    with pytest.raises(ConfigError):
        file_url("print", "http://h/v1.0/print/printers/p/jobs/j/documents/d", "a", True)
    with pytest.raises(ConfigError):
        list(expand([tmp_path / "nope"]))


def test_parse_size() -> None:
    assert parse_size("8M") == 8 << 20
    assert parse_size("8MiB") == 8 << 20
    assert parse_size("512k") == 512 << 10
    assert parse_size("1048576") == 1048576
    with pytest.raises(typer.BadParameter):
        parse_size("lots")


def test_range_bar() -> None:
    assert range_bar(100, [(0, 100)], 10).plain == "█" * 10
    assert range_bar(100, [], 10).plain == "·" * 10
    assert range_bar(100, [(0, 50), (55, 60)], 10).plain == "█████▒····"
    assert range_bar(0, [], 5).plain == "█████"


def test_token_from_a_local_data_dir(tmp_path: Path) -> None:
    assert resolve_token("given", tmp_path) == "given"
    assert resolve_token(None, tmp_path) is None
    assert not (tmp_path / "keys").exists()  # never creates a key
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "jwt-hs256.key").write_text("ab" * 32)
    token = resolve_token(None, tmp_path)
    assert token is not None
    claims = jwt.decode(token, bytes.fromhex("ab" * 32), algorithms=["HS256"], audience="chunkd")
    assert "ImageStore.Admin" in claims["roles"] and "Chunkd.Admin" in claims["roles"]


def test_public_api_is_sorted_and_importable() -> None:
    import chunkd.client as client

    assert client.__all__ == sorted(client.__all__)
    for name in client.__all__:
        assert getattr(client, name) is not None
    assert issubclass(client.AuthError, client.ServerError)
    assert issubclass(client.ServerError, client.TransferError)
    assert all(issubclass(e, client.UploadError) for e in (client.ConfigError, client.TransferError,
                                                            client.VerificationError))
