"""The README's commands and code refer to commands, options and names that exist."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import daskmasker
from daskmasker.cli import _get_parser

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)


def _subparsers(parser):
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action.choices


def _options(parser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def _commands() -> list[list[str]]:
    found = []
    for lang, body in BLOCKS:
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            for part in re.split(r"&&|;", line):
                words = shlex.split(part.replace("...", ""))
                if words[:1] == ["daskmasker"]:
                    found.append(words[1:])
    return found


def test_opening_commands_install_and_run():
    """Two commands: a virtualenv (pip refuses the system Python of Debian 12+, Ubuntu 23.04+
    and Homebrew: PEP 668) with daskmasker and the demo, then the tests."""
    first, second = BLOCKS[0][1].strip().splitlines()[:2]
    assert first == (
        "python3 -m venv .venv && "
        '.venv/bin/pip install -e ".[plotting]" && .venv/bin/daskmasker demo'
    )
    assert second.split("#")[0].strip() == ".ci/run"
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()


def test_ci_run_installs_into_a_venv_where_pip_is_refused(tmp_path):
    """.ci/run's PEP 668 check (run here with the stdlib folder replaced by one that holds the
    EXTERNALLY-MANAGED marker, and by one that does not) picks ./.venv only for the former."""
    script = (ROOT / ".ci" / "run").read_text()
    check = re.search(r"python3 - <<'EOF'\n(.*?)\nEOF", script, re.S).group(1)
    marked = tmp_path / "stdlib"
    marked.mkdir()
    (marked / "EXTERNALLY-MANAGED").write_text("[externally-managed]\n")
    probe = check.replace('sysconfig.get_path("stdlib")', repr(str(marked)))
    assert subprocess.run([sys.executable, "-c", probe]).returncode == (
        0 if sys.prefix == sys.base_prefix else 1
    )
    unmarked = check.replace('sysconfig.get_path("stdlib")', repr(str(tmp_path)))
    assert subprocess.run([sys.executable, "-c", unmarked]).returncode == 1
    assert "python=.venv/bin/python" in script


@pytest.mark.parametrize("words", _commands(), ids=lambda w: " ".join(w[:1]))
def test_cli_commands_and_options_exist(words):
    commands = _subparsers(_get_parser())
    assert words[0] in commands, f"README runs `daskmasker {words[0]}`, which does not exist"
    options = _options(_get_parser()) | _options(commands[words[0]])
    for word in words[1:]:
        if word.startswith("--"):
            assert word in options, f"`daskmasker {words[0]}` has no option {word}"


def test_python_examples_import_public_names():
    names = set()
    for lang, body in BLOCKS:
        if lang == "python":
            for node in ast.walk(ast.parse(body)):
                if isinstance(node, ast.ImportFrom) and node.module == "daskmasker":
                    names |= {alias.name for alias in node.names}
    assert names, "the README shows no Python example"
    assert names <= set(daskmasker.__all__), names - set(daskmasker.__all__)


def test_linked_paths_exist():
    for path in re.findall(r"`((?:docs|benchmarks|deploy|notebooks|tests)/[\w./-]*)`", README):
        assert (ROOT / path.split("::")[0]).exists(), path


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_tests_named_in_docs_exist(doc):
    """Every `tests/file.py::test_name` a document cites is a test that exists."""
    text = doc.read_text()
    cited = re.findall(r"(tests/[\w/]+\.py)((?:::\w+)?)", text)
    for path, name in cited:
        source = ROOT / path
        assert source.exists(), f"{doc.name} cites {path}, which does not exist"
        if name:
            assert re.search(rf"def {name[2:]}\b", source.read_text()), f"{doc.name}: {path}{name}"
