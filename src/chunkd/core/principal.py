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

    @property
    def unrestricted(self) -> bool:
        """The ``--no-auth`` caller, who holds every permission. Tokens cannot make one: their principals are
        ``user`` or ``app``, so a ``roles`` claim of ``["*"]`` is just an unknown role name."""
        return self.kind == "anonymous" and ALL_PERMISSIONS in self.roles

    def has_any(self, *permissions: str) -> bool:
        """True when the caller holds at least one of ``permissions`` as a scope or role."""
        granted = self.scopes | self.roles
        return self.unrestricted or any(p in granted for p in permissions)


ALL_PERMISSIONS = "*"
ANONYMOUS = Principal(kind="anonymous", roles=frozenset({ALL_PERMISSIONS}))
