"""Byte stores (implementations of :class:`chunkd.core.bytestore.ByteStore`), chosen by URL from one
registry and imported lazily, so that a backend's client library is needed only when it is used.

=======================================================  ==========================================
``azure://ACCOUNT/CONTAINER[/PREFIX]?endpoint=URL``       an Azure Blob container (``chunkd[azure]``)
``local`` (default)                                       files under ``DATA_DIR/store``
``file:///path``                                          files under ``/path``
``memory``                                                this process's memory (tests, experiments)
``s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION``       an S3 bucket (:mod:`chunkd.storage.s3`);
                                                          needs ``pip install 'chunkd[s3]'``
=======================================================  ==========================================
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chunkd.core.bytestore import ByteStore

__all__ = ["BACKENDS", "Backend", "open_byte_store"]


@dataclass(frozen=True)
class Backend:
    target: str  # "module:factory"; the factory takes (url, data_dir) and returns the store
    install_hint: str = ""  # what to install when the module's dependencies are missing


# sorted by name; each factory parses its own URL form
BACKENDS: dict[str, Backend] = {
    "azure": Backend("chunkd.storage.azure:from_url", "pip install 'chunkd[azure]'"),
    "file": Backend("chunkd.storage._factories:local_at_path"),
    "local": Backend("chunkd.storage._factories:local_in_data_dir"),
    "memory": Backend("chunkd.storage._factories:memory"),
    "s3": Backend("chunkd.storage.s3:from_url", "pip install 'chunkd[s3]'"),
}


def open_byte_store(url: str, data_dir: str) -> ByteStore:
    """Open the byte store named by ``url`` (``--storage`` / ``CHUNKD_STORAGE``). Raises ValueError for
    an unknown name, with the list of known ones; RuntimeError with an install hint when the backend's
    extra is missing."""
    scheme = (url or "local").split(":", 1)[0]
    backend = BACKENDS.get(scheme)
    if backend is None:
        raise ValueError(f"unknown storage {url!r} (known: {', '.join(sorted(BACKENDS))})")
    module_name, _, factory = backend.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install it with: {backend.install_hint}" if backend.install_hint else ""
        raise RuntimeError(f"the {scheme} byte store needs a package that is missing ({exc.name}){hint}") from exc
    store: Any = getattr(module, factory)(url or "local", Path(data_dir))
    return store  # type: ignore[no-any-return]
