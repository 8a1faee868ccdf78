"""Resume state: one small JSON file per (file identity, target), written atomically.

The state only remembers *which* server-side upload belongs to this file (a session id, an upload URL,
a chunk size); what the server already has is always asked from the server, never trusted from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def default_state_dir() -> Path:
    env = os.environ.get("CHUNKD_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "chunkd" / "uploads"


class StateStore:
    """Files named after a hash of the key, in ``directory`` (created on first save)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_state_dir()

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:40]

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save(self, key: str, state: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(state, fh)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
