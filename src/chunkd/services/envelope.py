"""What every typed record of a domain service keeps of the engine resource it is stored as."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chunkd.core.resources import Resource


@dataclass(frozen=True)
class Stored:
    """A record's resource envelope: its tenant, the key of the principal that created it, its times, and
    the version a compare-and-set update is checked against. A record made in memory has the defaults."""

    tenant: str = ""
    creator: str = ""
    created_at: float = 0.0
    modified_at: float = 0.0
    version: int = 0

    @classmethod
    def of(cls, res: Resource) -> Stored:
        return cls(res.tenant, res.owner, res.created_at, res.modified_at, res.version)

    def resource(self, kind: str, resource_id: str, data: dict[str, Any], parent: str = "") -> Resource:
        """The resource a record with this envelope is stored as."""
        return Resource(kind=kind, id=resource_id, tenant=self.tenant, owner=self.creator, data=dict(data),
                        created_at=self.created_at, modified_at=self.modified_at, parent=parent,
                        version=self.version)
