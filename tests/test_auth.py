"""Bearer tokens: the local HS256 key, RS256 keys from a JWKS file, and how claims become a principal."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chunkd.auth.authenticator import Authenticator, Unauthenticated
from chunkd.auth.permissions import ALL_ROLES
from chunkd.auth.tokens import CONSUMER_TENANT, InvalidToken, TokenVerifier, issue_token, load_or_create_secret


def _rsa_jwks(tmp_path: Path) -> tuple[object, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return key, path


def test_secret_is_created_once_and_kept_private(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    assert load_or_create_secret(tmp_path) == first
    key_file = tmp_path / "keys" / "jwt-hs256.key"
    assert key_file.stat().st_mode & 0o077 == 0


def test_local_tokens_map_claims_to_a_principal(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    verifier = TokenVerifier(secret)
    delegated = verifier.verify(issue_token(secret, tenant="t1", user="u1", app="a1", scopes=["PrintJob.Read"]))
    assert (delegated.kind, delegated.tenant, delegated.user, delegated.app) == ("user", "t1", "u1", "a1")
    assert delegated.scopes == {"PrintJob.Read"} and delegated.key == "user:t1:u1"
    app = verifier.verify(issue_token(secret, tenant="t1", app="a2", roles=["ImageStore.Admin"]))
    assert app.kind == "app" and app.key == "app:t1:a2" and app.has_any("ImageStore.Admin")
    assert not app.has_any("ImageStore.Read")
    personal = verifier.verify(issue_token(secret, tenant=CONSUMER_TENANT, user="u9", scopes=["x"]))
    assert personal.personal


@pytest.mark.parametrize("mutate", ["other-key", "expired", "garbage", "alg-none"])
def test_bad_tokens_are_refused(tmp_path: Path, mutate: str) -> None:
    secret = load_or_create_secret(tmp_path)
    verifier = TokenVerifier(secret)
    if mutate == "other-key":
        token = issue_token(b"x" * 32, app="a")
    elif mutate == "expired":
        token = issue_token(secret, app="a", lifetime=-120)
    elif mutate == "garbage":
        token = "not.a.token"
    else:
        claims = jwt.decode(issue_token(secret, app="a"), options={"verify_signature": False})
        token = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_a_verified_token_is_remembered_until_it_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = load_or_create_secret(tmp_path)
    verifier = TokenVerifier(secret)
    token = issue_token(secret, app="a", roles=["ImageStore.Admin"], lifetime=60)
    first = verifier.verify(token)
    decodes: list[str] = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **kw: decodes.append("d") or real_decode(*a, **kw))
    assert verifier.verify(token) == first and decodes == []  # answered from the cache
    later = time.time() + 60 + 31  # past exp and the 30 s leeway: not from the cache, verified again
    monkeypatch.setattr(time, "time", lambda: later)
    verifier.verify(token)  # (PyJWT reads its own clock, so this decode still accepts it)
    assert decodes == ["d"]
    # a forged token is never answered from the cache: the key is the whole token, signature included
    monkeypatch.undo()
    forged = token.rsplit(".", 1)[0] + ".AAAA"
    with pytest.raises(InvalidToken):
        verifier.verify(forged)


def test_rs256_tokens_from_a_jwks_file(tmp_path: Path) -> None:
    key, jwks = _rsa_jwks(tmp_path)
    verifier = TokenVerifier(b"s" * 32, jwks, issuer="https://idp.example/", audience="api://chunkd")
    now = int(time.time())
    claims = {"iss": "https://idp.example/", "aud": "api://chunkd", "iat": now, "exp": now + 600,
              "tid": "t", "oid": "o", "azp": "client", "scp": "PrintJob.ReadWrite"}
    good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})  # type: ignore[arg-type]
    principal = verifier.verify(good)
    assert principal.kind == "user" and principal.app == "client" and principal.scopes == {"PrintJob.ReadWrite"}
    wrong_aud = jwt.encode({**claims, "aud": "api://other"}, key, algorithm="RS256",  # type: ignore[arg-type]
                           headers={"kid": "k1"})
    with pytest.raises(InvalidToken):
        verifier.verify(wrong_aud)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"})  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        verifier.verify(forged)


def test_authenticator_header_forms(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    auth = Authenticator(TokenVerifier(secret))
    token = issue_token(secret, app="a")
    assert auth.authenticate({"authorization": f"Bearer {token}"}, {}).app == "a"
    for header in ({}, {"authorization": "Basic abc"}, {"authorization": "Bearer "}):
        with pytest.raises(Unauthenticated):
            auth.authenticate(header, {})
    assert Authenticator(None, enabled=False).authenticate({}, {}).kind == "anonymous"


def test_server_accepts_jwks_tokens_and_cli_tokens(serve, tmp_path: Path) -> None:
    key, jwks = _rsa_jwks(tmp_path)
    server = serve(env={"CHUNKD_JWKS_FILE": str(jwks), "CHUNKD_JWT_AUDIENCE": "api://chunkd"})
    now = int(time.time())
    idp_token = jwt.encode({"aud": "api://chunkd", "iat": now, "exp": now + 600, "tid": "t", "appid": "ci",
                            "roles": ["ImageStore.Read"]}, key, algorithm="RS256",  # type: ignore[arg-type]
                           headers={"kid": "k1"})
    url = f"{server.url}/ImageStore?api-version=6.0"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {idp_token}"}).status_code == 200
    assert httpx.get(url, headers={"Authorization": f"Bearer {server.token()}"}).status_code == 200
    put = httpx.put(f"{server.url}/ImageStore/x.txt?api-version=6.0", content=b"x",
                    headers={"Authorization": f"Bearer {idp_token}"})
    assert put.status_code == 403 and put.json()["Error"]["Code"] == "E_ACCESSDENIED"


def test_a_star_permission_in_a_token_grants_nothing(serve) -> None:
    """``*`` is the ``--no-auth`` principal's wildcard, not a permission a token can carry (issue 12)."""
    server = serve()
    secret = load_or_create_secret(server.data_dir)
    full = server.token()  # `chunkd token` without --roles: every real role, listed by name
    roles = jwt.decode(full, options={"verify_signature": False})["roles"]
    assert sorted(roles) == sorted(ALL_ROLES) and "*" not in roles
    stars = {"app": issue_token(secret, app="star", roles=["*"]),
             "user": issue_token(secret, user="u-star", scopes=["*"])}
    connector = {"@odata.type": "#microsoft.graph.industryData.azureDataLakeConnector", "displayName": "Star"}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/chunkd/v1/sessions?all=true", {}),  # every owner's sessions
        ("GET", "/chunkd/v1/stats", {}),
        ("PUT", "/ImageStore/star.txt?api-version=6.0", {"content": b"x"}),
        ("POST", "/files/", {"headers": {"Tus-Resumable": "1.0.0", "Upload-Length": "1"}}),
        ("GET", "/v1.0/print/printers", {}),
        ("POST", "/v1.0/print/printers", {"json": {"displayName": "Star"}}),
        ("GET", "/beta/external/industryData/dataConnectors", {}),
        ("POST", "/beta/external/industryData/dataConnectors", {"json": connector}),
    ]

    def send(c: httpx.Client, method: str, path: str, token: str, kw: dict[str, Any]) -> httpx.Response:
        headers = {**kw.get("headers", {}), "Authorization": f"Bearer {token}"}
        return c.request(method, path, headers=headers, content=kw.get("content"), json=kw.get("json"))

    with httpx.Client(base_url=server.url) as c:
        for method, path, kw in requests:
            for kind, star in stars.items():
                r = send(c, method, path, star, kw)
                assert r.status_code == 403, (kind, method, path, r.status_code, r.text)
            r = send(c, method, path, full, kw)
            assert r.status_code in (200, 201), (method, path, r.status_code, r.text)
