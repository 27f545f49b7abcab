"""Every public function and method of daskmasker has type hints (issue 29).

mypy (``.ci/run``) checks every module with ``disallow_untyped_defs`` (pyproject.toml); this test
reads every module with :mod:`ast` as well, so no public function anywhere escapes: its parameters
(but ``self`` and ``cls``) and its return must be annotated.  Public means a name without a
leading underscore, in a module and (for methods) a class without one; a package's
``__init__.py`` counts as the package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import daskmasker

PACKAGE = Path(daskmasker.__file__).parent

# Public functions allowed without type hints: none (every function is typed, and mypy runs with
# disallow_untyped_defs on every module).  Kept as a ratchet should one ever be needed.
UNTYPED_ALLOWED: frozenset[str] = frozenset()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _public_modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name.startswith("_") and path.name != "__init__.py":
            continue
        yield _module_name(path), ast.parse(path.read_text(), filename=str(path))


def _public_functions(
    body: list[ast.stmt], prefix: str, in_class: bool = False
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.name.startswith("_"):
                yield f"{prefix}.{node.name}", node, in_class
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield from _public_functions(node.body, f"{prefix}.{node.name}", in_class=True)


def _missing(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[str]:
    """The names of ``node``'s unannotated parameters (and ``return``)."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    if method and not static and positional:
        positional = positional[1:]  # self or cls
    every = [*positional, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    missing = [a.arg for a in every if a.annotation is None]
    if node.returns is None:
        missing.append("return")
    return missing


def untyped_public_functions() -> dict[str, list[str]]:
    """``{qualified name: [unannotated parameters, 'return']}`` over every module."""
    found = {}
    for module, tree in _public_modules():
        for name, node, method in _public_functions(tree.body, module):
            missing = _missing(node, method)
            if missing:
                found[name] = missing
    return found


def test_every_public_function_is_typed():
    untyped = untyped_public_functions()
    new = {name: untyped[name] for name in sorted(set(untyped) - UNTYPED_ALLOWED)}
    assert not new, f"public functions without type hints (parameters, return): {new}"
    typed_now = sorted(UNTYPED_ALLOWED - set(untyped))
    assert not typed_now, f"typed now: remove them from UNTYPED_ALLOWED: {typed_now}"


def test_the_check_sees_what_is_missing():
    tree = ast.parse(
        "def f(a, b: int, *args, c: int = 1, **kw) -> int: ...\n"
        "class C:\n"
        "    def m(self, x: int): ...\n"
        "    @staticmethod\n"
        "    def s(x: int) -> int: ...\n"
        "    def _private(self, y): ...\n"
        "class _Hidden:\n"
        "    def m(self, y): ...\n"
        "def g(a: int) -> None: ...\n"
    )
    found = {name: _missing(node, m) for name, node, m in _public_functions(tree.body, "mod")}
    assert found == {
        "mod.f": ["a", "args", "kw"],
        "mod.C.m": ["return"],
        "mod.C.s": [],
        "mod.g": [],
    }
