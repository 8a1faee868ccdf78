"""Short-lived capability tokens for URLs (Graph's ``tempauthtoken``): ``<expiry>.<HMAC-SHA256>``.

A token binds one subject (an upload session id) to an expiry time. The key lives in the data directory
(``keys/<name>.key``, 0600) so every server process sharing the directory accepts every other's URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class BadUrlToken(Exception):
    """The token is malformed or its signature does not match."""


class ExpiredUrlToken(Exception):
    """The token was valid but its time is up."""


class UrlSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, subject: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{subject}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, subject: str, expires: float) -> str:
        """The token for ``subject`` valid until ``expires`` (epoch seconds, rounded up)."""
        exp = int(-(-expires // 1))
        return f"{exp}.{self._mac(subject, exp)}"

    def verify(self, subject: str, token: str, now: float) -> int:
        """The token's expiry; BadUrlToken if it is not ours for ``subject``, ExpiredUrlToken if late."""
        exp_text, _, mac = token.partition(".")
        # isascii: str.isdigit() is also true for "²", which int() refuses
        if not (exp_text.isascii() and exp_text.isdigit()) or not mac or len(exp_text) > 12:
            raise BadUrlToken("malformed upload URL token")
        exp = int(exp_text)
        if not hmac.compare_digest(mac, self._mac(subject, exp)):
            raise BadUrlToken("the upload URL's token is not valid")
        if exp < now:
            raise ExpiredUrlToken("the upload URL has expired")
        return exp
