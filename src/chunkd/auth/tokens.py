"""Bearer JWTs: chunkd's own HS256 key (kept in the data directory) or RS256 keys from a JWKS file.

Claims map onto a :class:`~chunkd.core.principal.Principal` the way Microsoft identity tokens do:
tenant ``tid``, user ``oid`` (or ``sub``), application ``appid`` / ``azp``, delegated scopes ``scp``
(space-separated), application roles ``roles``. A token with ``scp`` is delegated (a user); without, it
is an application token. A token from the Microsoft consumer tenant is a personal account.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jwt

from chunkd.auth.keys import load_or_create_key
from chunkd.core.principal import Principal

ISSUER = "chunkd"
AUDIENCE = "chunkd"
LEEWAY = 30  # seconds of clock skew accepted on exp and nbf
CACHE_SIZE = 1024  # verified tokens remembered (a client sends the same token with every chunk)
CONSUMER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"  # Microsoft accounts (personal) tenant id
DEFAULT_TENANT = "00000000-0000-0000-0000-00000000c4d0"


class InvalidToken(Exception):
    """The bearer token is missing, malformed, expired or not signed by a trusted key."""


def load_or_create_secret(data_dir: Path) -> bytes:
    """The HS256 signing key, created on first use so local set-up needs no configuration."""
    return load_or_create_key(data_dir, "jwt-hs256")


def issue_token(secret: bytes, *, tenant: str = DEFAULT_TENANT, user: str = "", app: str = "chunkd-cli",
                scopes: list[str] | None = None, roles: list[str] | None = None,
                lifetime: float = 24 * 3600) -> str:
    """A token chunkd accepts. With ``scopes`` it is delegated (needs ``user``), else an app token."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5,
                              "exp": int(now + lifetime), "tid": tenant, "appid": app}
    if user:
        claims["oid"] = user
        claims["sub"] = user
    if scopes:
        claims["scp"] = " ".join(scopes)
    if roles:
        claims["roles"] = list(roles)
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Verifies bearer tokens against the local HS256 key and, if configured, a JWKS file."""

    def __init__(self, secret: bytes, jwks_file: Path | None = None, issuer: str | None = None,
                 audience: str | None = None) -> None:
        self._secret = secret
        self._jwks: jwt.PyJWKSet | None = None
        self._issuer = issuer
        self._audience = audience
        if jwks_file is not None:
            self._jwks = jwt.PyJWKSet.from_dict(json.loads(jwks_file.read_text()))
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()  # token -> (principal, until)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; InvalidToken otherwise. A token verified before is answered
        from a bounded cache until its own ``exp`` (plus the leeway ``jwt.decode`` allows): the signature
        and claims of the same string cannot change, and every small chunk of an upload carries one."""
        hit = self._verified.get(token)
        if hit is not None:
            if time.time() <= hit[1]:
                self._verified.move_to_end(token)
                return hit[0]
            del self._verified[token]
        claims = self._decode(token)
        principal = principal_from_claims(claims)
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            self._verified[token] = (principal, float(exp) + LEEWAY)
            if len(self._verified) > CACHE_SIZE:
                self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        alg = header.get("alg")
        try:
            if alg == "HS256":
                claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                                    leeway=LEEWAY)
            elif alg in ("RS256", "RS384", "RS512", "ES256") and self._jwks is not None:
                key = self._find_key(header.get("kid"))
                options = {"verify_aud": self._audience is not None}
                claims = jwt.decode(token, key, algorithms=[alg], audience=self._audience, issuer=self._issuer,
                                    options=options, leeway=LEEWAY)  # type: ignore[arg-type]
            else:
                raise InvalidToken(f"tokens signed with {alg} are not accepted")
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the token has expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is not valid: {exc}") from exc
        return claims

    def _find_key(self, kid: str | None) -> Any:
        assert self._jwks is not None
        for key in self._jwks.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise InvalidToken("unknown signing key")


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    scp = claims.get("scp")
    scopes = frozenset(scp.split()) if isinstance(scp, str) else frozenset()
    roles_claim = claims.get("roles") or []
    roles = frozenset(r for r in roles_claim if isinstance(r, str)) if isinstance(roles_claim, list) else frozenset()
    tenant = str(claims.get("tid", ""))
    user = str(claims.get("oid") or claims.get("sub") or "")
    app = str(claims.get("appid") or claims.get("azp") or "")
    kind = "user" if "scp" in claims else "app"
    if kind == "app" and not app:
        app = str(claims.get("sub", ""))
    return Principal(kind=kind, tenant=tenant, user=user, app=app, scopes=scopes, roles=roles,
                     personal=tenant == CONSUMER_TENANT)
