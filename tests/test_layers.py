"""The layers of ARCHITECTURE.md "Layout": the pure core imports no I/O library, and each
module imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "controller"
PURE = ["errors.py", "spec", "render", "observed.py", "plan.py", "review.py", "report.py", "record.py", "ports.py",
        "settings.py", "metrics.py"]
# The acting core: it keeps time (health gates) but reaches the world only through ports.
ACTING = ["apply.py", "reconcile.py", "loop.py"]
ACTING_FORBIDDEN = {"docker", "git", "watchfiles", "structlog", "subprocess", "socket", "sqlite3", "requests",
                    "httpx", "urllib.request", "os", "pathlib", "logging", "shutil", "fcntl"}
IO_LIBRARIES = {"docker", "git", "watchfiles", "structlog", "requests"}
FORBIDDEN = {"docker", "git", "watchfiles", "structlog", "subprocess", "socket", "sqlite3", "requests",
             "httpx", "urllib.request", "time", "datetime", "random", "os", "pathlib", "logging", "shutil"}
# which controller modules each pure module may import (itself and its own package aside)
ALLOWED = {
    "errors": set(),
    "spec": {"controller.errors"},
    "render": {"controller.errors", "controller.spec"},
    "observed": {"controller.errors"},
    "plan": {"controller.errors", "controller.spec", "controller.render", "controller.observed"},
    "review": {"controller.errors", "controller.render", "controller.plan"},
    "report": {"controller.errors", "controller.render", "controller.plan"},
    "record": set(),
    "settings": {"controller.errors", "controller.spec"},
    "metrics": set(),
    "ports": {"controller.observed", "controller.record", "controller.render"},
    "apply": {"controller.errors", "controller.observed", "controller.plan", "controller.ports", "controller.render"},
    "loop": {"controller.errors", "controller.reconcile"},
    "reconcile": {"controller.errors", "controller.apply", "controller.observed", "controller.plan", "controller.ports", "controller.record",
                  "controller.render", "controller.spec"},
}


def _modules(entry: str) -> list[Path]:
    path = PACKAGE / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


PURE_MODULES = [p for e in PURE for p in _modules(e)]


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_module_imports_no_io(path: Path) -> None:
    bad = {n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}; the pure core must not do I/O"


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_module_imports_only_lower_layers(path: Path) -> None:
    layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    own = f"controller.{layer}"
    used = {n for n in _imports(path) if n.startswith("controller") and n != own and not n.startswith(own + ".")}
    bad = {n for n in used if not any(n == a or n.startswith(a + ".") for a in ALLOWED[layer])}
    assert not bad, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(bad)}; allowed: {sorted(ALLOWED[layer])}"


ACTING_MODULES = [p for e in ACTING for p in _modules(e)]


@pytest.mark.parametrize("path", ACTING_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_acting_core_reaches_the_world_only_through_ports(path: Path) -> None:
    bad = {n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in ACTING_FORBIDDEN)}
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}; use controller.ports instead"
    test_pure_module_imports_only_lower_layers(path)


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if "adapters" not in p.parts),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_adapters_import_io_libraries(path: Path) -> None:
    bad = {n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in IO_LIBRARIES)}
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}; only controller/adapters may"


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import docker\nfrom git import Repo\nfrom controller.render import x\n")
    assert _imports(bad) == {"docker", "git", "controller.render"}
