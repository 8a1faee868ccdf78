"""Azure Storage service SAS for chunkd's blob containers: signing and verification.

chunkd signs container SAS URLs (``sr=c``) with an account key it keeps in the data directory
(``keys/blob-account.key``, 64 random bytes, base64, mode 0600), using Azure's own string-to-sign, so any
Azure Blob client accepts them unchanged. Verification follows the order Azure applies: parse ->
``spr`` against the request scheme -> ``st``/``se`` window -> signature (constant-time) -> resource scope
(``sr`` and container) -> permission letter for the operation. Each failure is a :class:`SasError`
carrying the Azure error code the blob front end answers with.

String-to-sign for ``sv >= 2020-12-06`` (16 lines)::

    sp, st, se, /blob/{account}/{container}[/{blob}], si, sip, spr, sv, sr, snapshotTime, ses,
    rscc, rscd, rsce, rscl, rsct

``2018-11-09 <= sv < 2020-12-06`` drops ``ses``. Older versions are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from chunkd.auth.keys import load_or_create_key

SAS_VERSION = "2025-11-05"  # sv of the SAS chunkd issues
_MIN_VERSION = "2018-11-09"
_SES_VERSION = "2020-12-06"
PERMISSION_ORDER = "racwdxyltfmei"
_FIELDS = ("sp", "st", "se", "si", "sip", "spr", "sv", "sr", "ses", "rscc", "rscd", "rsce", "rscl", "rsct")


class SasError(Exception):
    """A SAS that does not allow the request; ``code`` is the Azure ``x-ms-error-code``."""

    def __init__(self, status: int, code: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail


def _auth_failed(detail: str) -> SasError:
    return SasError(403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of "
                    "Authorization header is formed correctly including the signature.", detail)


def load_or_create_account_key(data_dir: Path) -> bytes:
    """The account key (raw bytes), created on first use; the first of several starting processes wins."""
    return load_or_create_key(data_dir, "blob-account", size=64, encoding="base64")


def format_time(dt: datetime) -> str:
    """SAS time format: ``2024-05-01T18:00:00Z`` (UTC, whole seconds)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """ISO-8601 as SAS tokens carry it (``Z`` or an offset; date-only allowed). Raises ValueError."""
    text = value.strip()
    if len(text) == 10:
        text += "T00:00:00Z"
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def canonical_resource(account: str, container: str, blob: str = "") -> str:
    return f"/blob/{account}/{container}" + (f"/{blob}" if blob else "")


def string_to_sign(fields: Mapping[str, str], resource: str) -> str:
    """Azure's service-SAS string-to-sign for the fields' ``sv`` (values URL-decoded)."""
    f = {name: fields.get(name, "") for name in _FIELDS}
    lines = [f["sp"], f["st"], f["se"], resource, f["si"], f["sip"], f["spr"], f["sv"], f["sr"], ""]
    if f["sv"] >= _SES_VERSION:
        lines.append(f["ses"])
    lines += [f["rscc"], f["rscd"], f["rsce"], f["rscl"], f["rsct"]]
    return "\n".join(lines)


def signature(key: bytes, text: str) -> str:
    return base64.b64encode(hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()).decode()


def sign_container_sas(key: bytes, account: str, container: str, *, permissions: str, expiry: datetime,
                       start: datetime | None = None, protocol: str = "https,http",
                       version: str = SAS_VERSION) -> str:
    """A container SAS query string (without ``?``), parameters in the order Azure SDKs emit them."""
    fields = {"sv": version, "st": format_time(start) if start else "", "se": format_time(expiry), "sr": "c",
              "sp": permissions, "spr": protocol}
    fields["sig"] = signature(key, string_to_sign(fields, canonical_resource(account, container)))
    order = ("sv", "st", "se", "sr", "sp", "spr", "sig")
    return "&".join(f"{name}={quote(fields[name], safe='')}" for name in order if fields[name])


@dataclass(frozen=True)
class SasGrant:
    """What a verified SAS allows: the container and the permission letters."""

    container: str
    permissions: str
    expiry: datetime


def verify(key: bytes, account: str, container: str, query: Mapping[str, str], *, scheme: str, permission: str,
           blob: str = "", now: datetime | None = None) -> SasGrant:
    """Check a request's SAS for an operation needing ``permission`` (one letter) on ``container`` (and
    ``blob``, for blob-level requests; a blob SAS, ``sr=b``, is signed over the blob and allows only it).

    ``query`` holds URL-decoded parameters. Raises SasError in Azure's order (see module docstring).
    """
    now = now or datetime.now(UTC)
    if "sig" not in query or "sv" not in query:
        raise SasError(401, "NoAuthenticationInformation", "Server failed to authenticate the request. Please refer "
                       "to the information in the www-authenticate header.", "the request carries no SAS (sig, sv)")
    sv, sp, sr = query.get("sv", ""), query.get("sp", ""), query.get("sr", "")
    if sv < _MIN_VERSION or len(sv) != 10:
        raise _auth_failed(f"sv={sv!r} is not a supported signed version")
    if not query.get("se"):
        raise _auth_failed("Signed expiry time (se) is required")
    try:
        expiry = parse_time(query["se"])
        start = parse_time(query["st"]) if query.get("st") else None
    except ValueError as exc:
        raise _auth_failed("se/st must be ISO-8601 times") from exc
    spr = query.get("spr", "")
    allowed = {p.strip() for p in spr.split(",")} if spr else {"https", "http"}
    if not allowed <= {"https", "http"}:
        raise _auth_failed(f"spr={spr!r} is not a valid protocol list")
    if scheme not in allowed:
        raise SasError(403, "AuthorizationProtocolMismatch", "This request is not authorized to perform this "
                       "operation using this protocol.")
    if start is not None and now < start:
        raise _auth_failed(f"Signed start time (st) {format_time(start)} is in the future; current time is "
                           f"{format_time(now)}")
    if now > expiry:
        raise _auth_failed(f"Signed expiry time [{format_time(expiry)}] must be after signed start time "
                           f"[{format_time(now)}]")
    resource = canonical_resource(account, container, blob if sr == "b" else "")
    expected = signature(key, string_to_sign(query, resource))
    try:
        given = base64.b64decode(query["sig"], validate=True)
    except (binascii.Error, ValueError):
        given = b""
    if not hmac.compare_digest(given, base64.b64decode(expected)):
        raise _auth_failed("Signature did not match. String to sign used was " + repr(string_to_sign(query, resource)))
    if sr not in ("c", "b") or (sr == "b" and not blob):
        raise SasError(403, "AuthorizationResourceTypeMismatch", "This request is not authorized to perform this "
                       "operation using this resource type.")
    if permission not in sp:
        raise SasError(403, "AuthorizationPermissionMismatch", "This request is not authorized to perform this "
                       "operation using this permission.")
    return SasGrant(container=container, permissions=sp, expiry=expiry)
