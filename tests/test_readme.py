"""The README's commands and code refer to commands, options and names that exist."""

from __future__ import annotations

import ast
import os
import re
import shlex
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
    first, second = BLOCKS[0][1].strip().splitlines()[:2]
    assert first.startswith('python3 -m pip install -e ".[plotting]" && daskmasker demo')
    assert second.split("#")[0].strip() == ".ci/run"
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


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
