"""The package's layout holds its promises: Dask's private API in one module, every module
named in docs/architecture.md."""

from __future__ import annotations

import ast
import re
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


def _documented() -> dict[str, set[str]]:
    """The modules docs/architecture.md's package table names, by package."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text("utf-8")
    named: dict[str, set[str]] = {}
    package = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[1].startswith("`"):
            continue
        if cells[0]:
            package = cells[0].strip("`").rstrip("/")
        named.setdefault(package, set()).update(re.findall(r"`([\w/]+)`", cells[1]))
    return named


def test_docs_architecture_names_every_module():
    named = _documented()
    missing = []
    for name in _modules():
        parts = name.split(".")[1:]
        if not parts or parts[-1].startswith("__") or PACKAGE.joinpath(*parts).is_dir():
            continue  # the package itself, a package's __init__, __main__
        package = "daskmasker" if len(parts) == 1 else parts[0]
        if parts[-1] not in named.get(package, set()):
            missing.append(name)
    assert "plan" in named["compute"]  # negative control: the table is read
    assert missing == []


# the signatures of a measurement: a time in ms, a speed-up, a range of seconds or percents, a
# figure "against" another, a duration something "took"
MEASURED = re.compile(
    r"\b\d+(?:\.\d+)?\s?(?:ms|µs)\b"
    r"|\b\d+(?:\.\d+)?\s?[x×]\s(?:faster|slower)"
    r"|\b\d+(?:\.\d+)?\s?[-–]\s?\d+(?:\.\d+)?\s?(?:s|ms|%)(?!\w)"
    r"|\bagainst\s~?\d+(?:\.\d+)?\s?(?:s|ms|MB|GB)\b"
    r"|\btook\s~?\d"
)


def _docstrings(tree: ast.Module) -> list[tuple[int, str]]:
    """Every docstring of a module: its own, its classes' and functions', and those under its
    assignments (attributes' docstrings)."""
    found = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for stmt in body:
            if (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):
                found.append((stmt.lineno, stmt.value.value))
    return found


def test_docstrings_carry_no_measured_figures():
    """Docstrings say what and why; measured figures are dated in benchmarks/results/."""
    hits = [
        f"{name}:{line}: {match.group(0)!r}"
        for name, tree in _modules().items()
        for line, text in _docstrings(tree)
        for match in MEASURED.finditer(text)
    ]
    assert MEASURED.search("parses in 8 ms, against 95 ms")  # negative control: it matches
    assert MEASURED.search("ran them 4–8 % slower") and MEASURED.search("~10x faster")
    assert hits == []
