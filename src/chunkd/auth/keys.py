"""Secret keys kept in the data directory, created on first use.

Every signing key chunkd needs (bearer JWTs, print upload URLs, the blob account key) lives in
``DATA_DIR/keys/<name>.key`` with mode 0600. Several processes may start at once: each writes a
candidate to a private temporary file and hard-links it into place, so exactly one candidate wins and
everyone reads the winner.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Literal


def load_or_create_key(data_dir: Path, name: str, size: int = 32,
                       encoding: Literal["hex", "base64"] = "hex") -> bytes:
    """The key ``name`` (``size`` random bytes), stored hex- or base64-encoded."""
    path = data_dir / "keys" / f"{name}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        raw = secrets.token_bytes(size)
        text = raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()
        tmp = path.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # first writer wins when two processes start at once
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    stored = path.read_text().strip()
    return bytes.fromhex(stored) if encoding == "hex" else base64.b64decode(stored)
