"""Front ends translate HTTP to engine calls; they must not reach past the core into storage or SQL."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOLS = Path(__file__).resolve().parents[1] / "src" / "chunkd" / "protocols"
FORBIDDEN = ("chunkd.storage", "chunkd.metadata", "sqlalchemy", "alembic", "psycopg", "sqlite3")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", sorted(PROTOCOLS.glob("*.py")), ids=lambda p: p.name)
def test_protocols_do_not_import_storage_or_metadata(module: Path) -> None:
    bad = sorted(m for m in imported_modules(module) if m.startswith(FORBIDDEN))
    assert not bad, f"{module.name} imports {bad}; go through chunkd.core.engine instead"


def test_the_guard_sees_protocol_modules() -> None:
    assert len(list(PROTOCOLS.glob("*.py"))) >= 2
    assert any(m.startswith("chunkd.core") for m in imported_modules(PROTOCOLS / "servicefabric.py"))
