"""Short-lived capability tokens for URLs (Graph's ``tempauthtoken``): ``<expiry>.<HMAC-SHA256>``.

A token binds one subject (an upload session id) to an expiry time. The key lives in the data directory
(``keys/<name>.key``, 0600) so every server process sharing the directory accepts every other's URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path


class BadUrlToken(Exception):
    """The token is malformed or its signature does not match."""


class ExpiredUrlToken(Exception):
    """The token was valid but its time is up."""


def load_or_create_key(data_dir: Path, name: str) -> bytes:
    """A 32-byte key, created on first use; the first of several racing processes wins."""
    path = data_dir / "keys" / f"{name}.key"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_bytes(32).hex())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


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
        if not exp_text.isdigit() or not mac or len(exp_text) > 12:
            raise BadUrlToken("malformed upload URL token")
        exp = int(exp_text)
        if not hmac.compare_digest(mac, self._mac(subject, exp)):
            raise BadUrlToken("the upload URL's token is not valid")
        if exp < now:
            raise ExpiredUrlToken("the upload URL has expired")
        return exp
