"""Who is calling: the identity every API family authenticates into."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    ``kind`` is ``user`` (delegated token), ``app`` (application token), ``cert`` (TLS client certificate)
    or ``anonymous`` (authentication switched off). ``scopes`` are delegated permissions (``scp``),
    ``roles`` application permissions or chunkd roles (``roles``).
    """

    kind: str
    tenant: str = ""
    user: str = ""
    app: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    personal: bool = False

    @property
    def key(self) -> str:
        """Stable identity used as a session owner."""
        if self.kind == "user":
            return f"user:{self.tenant}:{self.user}"
        if self.kind == "app":
            return f"app:{self.tenant}:{self.app}"
        if self.kind == "cert":
            return f"cert:{self.user}"
        return "anonymous"

    def has_any(self, *permissions: str) -> bool:
        """True when the caller holds at least one of ``permissions`` as a scope or role."""
        granted = self.scopes | self.roles
        return "*" in granted or any(p in granted for p in permissions)


ANONYMOUS = Principal(kind="anonymous", roles=frozenset({"*"}))
