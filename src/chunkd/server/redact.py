"""Credentials kept out of log lines: query parameters, URL user info, bearer values and JWTs.

Three entry points, from the most to the least informed:

* :func:`redact_query` for a query string the caller has in hand (the access log's request target);
* :func:`redact_url` for a URL chunkd itself holds, such as a webhook URL (user info and credential-like
  query values replaced);
* :func:`redact_text` for free text that may *contain* a URL or a token: every log record's message and
  traceback passes through it in :mod:`chunkd.server.logs`, so an exception that quotes a Graph upload URL
  (``tempauthtoken``), a blob SAS URL (``sig``) or a ``user:password@`` URL does not leak it, whichever
  logger wrote it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "REDACTED"
SECRET_NAMES = frozenset({"sig", "tempauthtoken", "code", "password", "passwd", "pwd", "apikey", "api_key",
                          "api-key", "key", "client_secret", "authorization", "auth", "jwt", "sas"})
SECRET_PARTS = ("token", "secret", "signature", "credential", "password", "bearer")
# a JWT, or a value that says what it is
BEARER_LIKE = re.compile(r"^(eyJ[\w-]{8,}\.|(bearer|basic)(\s|%20|\+))", re.IGNORECASE)

# in free text: "scheme://userinfo@", "name=value" pairs, "Authorization: ...", "Bearer x", a bare JWT
_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s/?#@\"'<>]+@", re.IGNORECASE)
# a pair starts a query, follows another, or starts a quoted string (uvicorn's trace log: query_string': b'a=1)
_PARAM = re.compile(r"(^|[?&;'\"\s(,])([^=&\s?#\"'<>(,]+)=([^&\s#\"'<>]+)")
_BEARER = re.compile(r"\b(bearer)(\s+|%20|\+)[\w.~+/=-]+", re.IGNORECASE)
_AUTHORIZATION = re.compile(r"\b((?:proxy-)?authorization['\"]?\s*[:=,]\s*['\"]?)[^\s'\",}]+(\s+[^\s'\",}]+)?",
                            re.IGNORECASE)
_JWT = re.compile(r"\beyJ[\w-]{8,}\.[\w-]+\.[\w-]*")


def _secret(name: str, value: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_NAMES or any(p in lowered for p in SECRET_PARTS) or bool(BEARER_LIKE.match(value))


def redact_query(query: str) -> str:
    """``query`` with the value of every credential-like parameter replaced by ``REDACTED``."""
    if not query:
        return query
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if eq and value and _secret(name, value):
            parts[i] = f"{name}={REDACTED}"
    return "&".join(parts)


def redact_url(url: str) -> str:
    """``url`` without its user info (``REDACTED@``) and with credential-like query values redacted."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, parts.path, redact_query(parts.query), parts.fragment))


def _param(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    return f"{sep}{name}={REDACTED}" if _secret(name, value) else match.group(0)


def redact_text(text: str) -> str:
    """``text`` with URL user info, credential-like ``?name=value`` pairs, bearer values and JWTs redacted."""
    # cheap test first: most log lines hold none of the markers
    if "=" in text:
        text = _PARAM.sub(_param, text)
    if "@" in text:
        text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    lowered = text.lower()
    if "authorization" in lowered:  # a header quoted in a message: "Authorization: Basic dXNlcjpwdw=="
        text = _AUTHORIZATION.sub(rf"\1{REDACTED}", text)
    if "bearer" in lowered:
        text = _BEARER.sub(rf"\1\2{REDACTED}", text)
    return text
