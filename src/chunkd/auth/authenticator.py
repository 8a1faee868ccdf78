"""Turns a request's credentials into a Principal: a bearer token or a verified TLS client certificate."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from chunkd.auth.permissions import IMAGESTORE_ADMIN, IMAGESTORE_READ
from chunkd.auth.tokens import InvalidToken, TokenVerifier
from chunkd.core.principal import ANONYMOUS, Principal

# The key under the request's ``scope["state"]`` where the authenticated principal's key is left for the
# access log (chunkd.server.access_log); one dict write per request.
PRINCIPAL_STATE_KEY = "chunkd.principal"


def note_principal(scope: Mapping[str, Any], key: str) -> None:
    """Leave who the caller is for the access log (also for callers a URL credential admits: a SAS)."""
    state = scope.get("state")
    if isinstance(state, dict):
        state[PRINCIPAL_STATE_KEY] = key


class Unauthenticated(Exception):
    """No acceptable credentials."""


class Authenticator:
    """``enabled=False`` (``--no-auth``) makes every caller the anonymous principal with every role.

    Client certificates are only present when the server runs TLS and requires them (the TLS layer has
    already verified the chain against the configured CA). Like Service Fabric's admin client common names
    and thumbprints, a certificate whose subject common name or SHA-1 thumbprint (hex, any case, colons
    allowed) is in ``admin_names`` maps to the image-store admin role; any other to read-only.
    """

    def __init__(self, verifier: TokenVerifier | None, *, enabled: bool = True,
                 admin_names: frozenset[str] = frozenset()) -> None:
        self.verifier = verifier
        self.enabled = enabled
        self.admin_names = admin_names
        self._admin_thumbprints = frozenset(_thumbprint_key(n) for n in admin_names)

    @property
    def mode(self) -> str:
        return "jwt" if self.enabled else "none"

    def authenticate(self, headers: Mapping[str, str], scope: Mapping[str, Any]) -> Principal:
        principal = self._authenticate(headers, scope)
        note_principal(scope, principal.key)
        return principal

    def _authenticate(self, headers: Mapping[str, str], scope: Mapping[str, Any]) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        auth = headers.get("authorization", "")
        if auth:
            kind, _, token = auth.partition(" ")
            if kind.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
            if self.verifier is None:
                raise Unauthenticated("bearer tokens are not accepted")
            try:
                return self.verifier.verify(token.strip())
            except InvalidToken as exc:
                raise Unauthenticated(str(exc)) from exc
        chain = scope.get("extensions", {}).get("tls", {}).get("client_cert_chain") or []
        if chain:
            return self._from_certificate(chain[0])
        raise Unauthenticated("no credentials: send 'Authorization: Bearer <token>'")

    def _from_certificate(self, pem: str) -> Principal:
        cert = x509.load_pem_x509_certificate(pem.encode())
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(names[0].value) if names else ""
        thumbprint = hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest().upper()  # noqa: S324 - SF uses SHA-1
        admin = (bool(common_name) and common_name in self.admin_names) or thumbprint in self._admin_thumbprints
        role = IMAGESTORE_ADMIN if admin else IMAGESTORE_READ
        return Principal(kind="cert", user=common_name or thumbprint, app=thumbprint, roles=frozenset({role}))


def _thumbprint_key(name: str) -> str:
    """How a configured admin name compares with a certificate thumbprint (upper-case hex, no colons)."""
    return name.replace(":", "").replace(" ", "").upper()
