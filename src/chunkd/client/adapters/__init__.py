"""Protocol adapters by name."""

from __future__ import annotations

from chunkd.client.adapters.base import Adapter, Target
from chunkd.client.adapters.blob import BlobAdapter
from chunkd.client.adapters.graph_print import GraphPrintAdapter
from chunkd.client.adapters.sf import ServiceFabricAdapter
from chunkd.client.adapters.tus import TusAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "blob": BlobAdapter,
    "print": GraphPrintAdapter,
    "sf": ServiceFabricAdapter,
    "tus": TusAdapter,
}

__all__ = ["ADAPTERS", "Adapter", "BlobAdapter", "GraphPrintAdapter", "ServiceFabricAdapter", "Target", "TusAdapter"]
