"""The house's layering, checked on every import (absolute and relative) in src/chunkd:

* the core imports no backend, no front end, no server and no HTTP library;
* front ends (``protocols``) and domain services import neither byte stores nor metadata stores nor SQL;
* services know no HTTP;
* one wiring place: only ``chunkd.wiring`` opens backends and builds an Engine, and it sits below the
  server and the CLI that call it (it imports neither).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "chunkd"
BACKENDS = ("chunkd.storage", "chunkd.metadata", "sqlalchemy", "alembic", "psycopg", "sqlite3", "boto3",
            "botocore", "obstore", "azure")
HTTP = ("starlette", "uvicorn", "httpx", "h11", "httptools")


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports, relative imports resolved against its package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def modules(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


def _bad(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported_modules(path) if m.startswith(prefixes))


@pytest.mark.parametrize("module", modules("core"), ids=lambda p: p.name)
def test_the_core_imports_no_backend_front_end_or_http(module: Path) -> None:
    bad = _bad(module, (*BACKENDS, *HTTP, "chunkd.protocols", "chunkd.server", "chunkd.services", "chunkd.wiring",
                        "chunkd.cli", "chunkd.auth"))
    assert not bad, f"core/{module.name} imports {bad}: the core owns its ports and imports no backend"


@pytest.mark.parametrize("module", [*modules("protocols"), *modules("services")],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_front_ends_and_services_import_no_storage_or_sql(module: Path) -> None:
    bad = _bad(module, BACKENDS)
    assert not bad, f"{module.name} imports {bad}; go through chunkd.core.engine instead"


@pytest.mark.parametrize("module", modules("services"), ids=lambda p: p.name)
def test_services_know_no_http(module: Path) -> None:
    bad = _bad(module, (*HTTP, "chunkd.protocols", "chunkd.server"))
    assert not bad, f"services/{module.name} imports {bad}"


def test_one_wiring_place() -> None:
    wiring = PACKAGE / "wiring.py"
    openers = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "storage") or path.is_relative_to(PACKAGE / "metadata"):
            continue
        imports = imported_modules(path)
        if any(m in ("chunkd.storage.open_byte_store", "chunkd.metadata.open_store") for m in imports):
            openers.append(path)
        tree = ast.parse(path.read_text())
        builds = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                  and n.func.id == "Engine"]
        if builds and path != wiring:
            openers.append(path)
    assert openers == [wiring], f"engines are wired outside chunkd.wiring: {openers}"


def test_wiring_sits_below_the_server_and_the_cli() -> None:
    bad = _bad(PACKAGE / "wiring.py", ("chunkd.server", "chunkd.cli", "chunkd.protocols", *HTTP))
    assert not bad, f"wiring.py imports {bad}: the server and the CLI call the wiring, not the other way round"


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    pkg = tmp_path / "chunkd" / "core"
    pkg.mkdir(parents=True)
    sneaky = pkg / "sneaky.py"
    sneaky.write_text("from ..storage import local\nfrom . import models\nfrom .errors import X\n")
    globals()["SRC"] = tmp_path
    try:
        found = imported_modules(sneaky)
    finally:
        globals()["SRC"] = Path(__file__).resolve().parents[1] / "src"
    assert {"chunkd.storage", "chunkd.storage.local", "chunkd.core.models", "chunkd.core.errors.X"} <= found
    assert any(m.startswith("chunkd.core") for m in imported_modules(PACKAGE / "protocols" / "servicefabric.py"))
