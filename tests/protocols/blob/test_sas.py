"""Service SAS: the string-to-sign, signing and the verification order, without a server."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from chunkd.auth import sas

KEY = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def _token(**changes: str) -> dict[str, str]:
    q = dict(parse_qsl(sas.sign_container_sas(KEY, "acct", "upl", permissions="racwdl",
                                              expiry=NOW + timedelta(hours=1))))
    q.update(changes)
    return q


def _verify(q: dict[str, str], *, container: str = "upl", scheme: str = "http", permission: str = "w") -> None:
    sas.verify(KEY, "acct", container, q, scheme=scheme, permission=permission, now=NOW)


def test_string_to_sign_matches_the_documented_example() -> None:
    fields = {"sp": "racwdl", "se": "2026-11-22T03:34:27Z", "spr": "https,http", "sv": "2026-10-06", "sr": "c"}
    assert sas.string_to_sign(fields, "/blob/devstoreaccount1/upl") == (
        "racwdl\n\n2026-11-22T03:34:27Z\n/blob/devstoreaccount1/upl\n\n\nhttps,http\n2026-10-06\nc\n\n\n\n\n\n\n")
    # before 2020-12-06 there is no encryption-scope line
    older = sas.string_to_sign({**fields, "sv": "2019-12-12"}, "/blob/a/c")
    assert older.count("\n") == sas.string_to_sign(fields, "/blob/a/c").count("\n") - 1


def test_signature_equals_azure_sdk_generated_sas() -> None:
    """The SDK's own generate_container_sas with the same inputs yields the same signature."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    expiry = NOW + timedelta(hours=1)
    theirs = dict(parse_qsl(generate_container_sas(
        "acct", "upl", account_key=base64.b64encode(KEY).decode(),
        permission=ContainerSasPermissions(read=True, add=True, create=True, write=True, delete=True, list=True),
        expiry=expiry, protocol="https,http")))
    ours = dict(parse_qsl(sas.sign_container_sas(KEY, "acct", "upl", permissions="racwdl", expiry=expiry,
                                                 version=theirs["sv"])))
    assert ours["sig"] == theirs["sig"]
    _verify(theirs)  # and we accept theirs


def test_valid_token_passes_and_grants_its_letters() -> None:
    grant = sas.verify(KEY, "acct", "upl", _token(), scheme="https", permission="l", now=NOW)
    assert grant.permissions == "racwdl" and grant.container == "upl"


@pytest.mark.parametrize(("change", "code"), [
    ({"sig": _token()["sig"][:-2] + "A="}, "AuthenticationFailed"),
    ({"sp": "racwdlx"}, "AuthenticationFailed"),
    ({"se": "2030-01-01T00:00:00Z"}, "AuthenticationFailed"),
    ({"se": "2026-11-22T02:00:00Z"}, "AuthenticationFailed"),  # expired (checked before the signature)
    ({"st": "2026-11-22T04:00:00Z"}, "AuthenticationFailed"),  # not yet valid
    ({"spr": "https"}, "AuthorizationProtocolMismatch"),  # checked before the signature, as Azure does
    ({"se": "tomorrow"}, "AuthenticationFailed"),
    ({"sv": "2015-04-05"}, "AuthenticationFailed"),
    ({"sig": "%%%"}, "AuthenticationFailed"),
])
def test_tampered_tokens_are_refused(change: dict[str, str], code: str) -> None:
    with pytest.raises(sas.SasError) as err:
        _verify(_token(**change))
    assert err.value.code == code


def test_other_container_and_missing_permission() -> None:
    with pytest.raises(sas.SasError) as err:
        _verify(_token(), container="other")
    assert err.value.code == "AuthenticationFailed"
    q = dict(parse_qsl(sas.sign_container_sas(KEY, "acct", "upl", permissions="rl", expiry=NOW + timedelta(hours=1))))
    with pytest.raises(sas.SasError) as err:
        _verify(q, permission="w")
    assert err.value.code == "AuthorizationPermissionMismatch"
    with pytest.raises(sas.SasError) as err:
        _verify({})
    assert (err.value.status, err.value.code) == (401, "NoAuthenticationInformation")


def test_https_only_token_is_fine_over_https() -> None:
    q = dict(parse_qsl(sas.sign_container_sas(KEY, "acct", "upl", permissions="r", protocol="https",
                                              expiry=NOW + timedelta(hours=1))))
    _verify(q, scheme="https", permission="r")


def test_account_key_is_created_once_with_private_mode(tmp_path: Path) -> None:
    first = sas.load_or_create_account_key(tmp_path)
    assert len(first) == 64 and sas.load_or_create_account_key(tmp_path) == first
    assert (tmp_path / "keys" / "blob-account.key").stat().st_mode & 0o077 == 0
