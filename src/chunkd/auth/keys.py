"""Secret keys: shared through the metadata store, cached in the data directory.

Every signing key chunkd needs (bearer JWTs, print upload URLs, the blob account key) is kept as a
resource of kind ``chunkd.key`` in the metadata store, so every node on one metadata store accepts the
same tokens, upload URLs and SAS URLs (:func:`load_keys`; created once, by whichever node starts
first). Each node also keeps a copy in ``DATA_DIR/keys/<name>.key`` (mode 0600) for local tools; a key
file that exists before the store has the key is imported into it, so an installation made before keys
moved into the store keeps its tokens valid. Key files are written by a private temporary file and a
hard link, so several processes starting at once agree on one candidate.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from chunkd.core.errors import AlreadyExists
from chunkd.core.resources import Resource, ResourceStore

log = logging.getLogger("chunkd.keys")


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


KIND = "chunkd.key"
# name -> (random bytes, text encoding)
SPECS: dict[str, tuple[int, Literal["hex", "base64"]]] = {
    "jwt-hs256": (32, "hex"),
    "graph-print-upload": (32, "hex"),
    "blob-account": (64, "base64"),
}


@dataclass(frozen=True)
class Keys:
    jwt_secret: bytes
    upload_url: bytes
    blob_account: bytes


def _decode(text: str, encoding: str) -> bytes:
    return bytes.fromhex(text) if encoding == "hex" else base64.b64decode(text)


def _encode(raw: bytes, encoding: str) -> str:
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()


async def _shared(resources: ResourceStore, data_dir: Path, name: str, now: float) -> bytes:
    size, encoding = SPECS[name]
    path = data_dir / "keys" / f"{name}.key"
    found = await resources.get_resource(KIND, name)
    if found is None:
        text = path.read_text().strip() if path.exists() else _encode(secrets.token_bytes(size), encoding)
        try:
            await resources.put_resource(Resource(kind=KIND, id=name, tenant="", owner="chunkd", data={"key": text},
                                                  created_at=now, modified_at=now))
        except AlreadyExists:
            found = await resources.get_resource(KIND, name)  # another node was first: its key counts
        else:
            found = None
            key = _decode(text, encoding)
        if found is not None:
            key = _decode(str(found.data["key"]), encoding)
    else:
        key = _decode(str(found.data["key"]), encoding)
    _cache(path, _encode(key, encoding))
    return key


def _cache(path: Path, text: str) -> None:
    if path.exists() and path.read_text().strip() == text:
        return
    if path.exists():
        log.warning("%s differs from the key in the metadata store; the store's key is used", path)
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


async def load_keys(resources: ResourceStore, data_dir: Path) -> Keys:
    """Every signing key, from the metadata store (created there, or imported from the data directory,
    when missing), cached in ``data_dir``. The store's schema must be migrated."""
    now = time.time()
    return Keys(jwt_secret=await _shared(resources, data_dir, "jwt-hs256", now),
                upload_url=await _shared(resources, data_dir, "graph-print-upload", now),
                blob_account=await _shared(resources, data_dir, "blob-account", now))

