"""The package's layout holds its promises: Dask's private API in one module."""

from __future__ import annotations

import ast
from pathlib import Path

import daskmasker

PACKAGE = Path(daskmasker.__file__).parent


def _modules() -> dict[str, ast.Module]:
    """Every module of the package, by dotted name, parsed."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text("utf-8"))
    return out


def _imported(tree: ast.Module) -> set[str]:
    """The modules a module imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_dask_private_task_spec_is_imported_in_compute_graph_only():
    modules = _modules()
    importers = sorted(
        name for name, tree in modules.items() if "dask._task_spec" in _imported(tree)
    )
    assert "daskmasker.compute.projection" in modules  # negative control: the scan sees it
    assert importers == ["daskmasker.compute.graph"]
