"""The README's commands and code refer to commands, options and names that exist."""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
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


# a stand-in for python3, the venv's python and lint-imports: logs its call; as python3, answers
# the PEP 668 probe with $MANAGED (0: externally managed) and makes a venv of itself; a venv's
# python beside a "nopip" file has no pip
FAKE_PYTHON = """#!/bin/bash
echo "$0 $*" >> "$LOG"
case "$1 ${2:-}" in
    "- ") cat >/dev/null; exit "$MANAGED" ;;
    "-m pip") if [ "${3:-}" = --version ] && [ -e "$(dirname "$0")/nopip" ]; then exit 1; fi ;;
    "-c "*) dirname "$0" ;;
    "-m venv") mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && cp "$0" "$3/bin/lint-imports" ;;
esac
"""


def ci_run(
    tmp_path, managed: bool, venv: bool, programs=("chromium", "slurmctld", "munged"), pip=True
):
    """.ci/run in a copy of the repository's layout with stand-ins on a bare PATH (no
    apt-get): each program's calls, and the script's stderr."""
    repo, bin_dir, log = tmp_path / "repo", tmp_path / "bin", tmp_path / "calls"
    (repo / ".ci").mkdir(parents=True)
    (repo / ".ci" / "run").write_text((ROOT / ".ci" / "run").read_text())
    bin_dir.mkdir()
    for name in ("python3", "lint-imports", *programs):
        (bin_dir / name).write_text(FAKE_PYTHON)
        (bin_dir / name).chmod(0o755)
    for tool in ("dirname", "id", "cat", "mkdir", "cp"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    if venv:  # as the README's first command leaves it
        (repo / ".venv" / "bin").mkdir(parents=True)
        for name in ("python", "lint-imports"):
            shutil.copy(bin_dir / "python3", repo / ".venv" / "bin" / name)
        if not pip:
            (repo / ".venv" / "bin" / "nopip").touch()
    env = {"PATH": str(bin_dir), "LOG": str(log), "MANAGED": "0" if managed else "1"}
    ran = subprocess.run(
        ["/bin/bash", ".ci/run"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    return log.read_text().splitlines(), ran.stderr


@pytest.mark.parametrize(
    ("managed", "venv", "where"),
    [(False, True, ".venv"), (True, False, ".venv"), (False, False, "system")],
)
def test_ci_run_installs_into_the_venv_of_the_first_command(tmp_path, managed, venv, where):
    """Into ./.venv when the README's first command made it or pip refuses the system Python
    (PEP 668), into the running python3 otherwise (CI); ruff, lint-imports, mypy, pytest there."""
    calls, _ = ci_run(tmp_path, managed, venv)
    python = ".venv/bin/python" if where == ".venv" else str(tmp_path / "bin" / "python3")
    installs = [c for c in calls if "pip install" in c]
    assert installs == [f"{python} -m pip install -q -e .[test]"], calls
    for step in ("-m ruff check .", "-m mypy", "-m pytest -n 2 --dist loadfile"):
        assert f"{python} {step}" in calls, (step, calls)
    assert any(c.endswith("lint-imports ") for c in calls), calls


def test_ci_run_remakes_a_venv_made_without_pip(tmp_path):
    """`python3 -m venv .venv` where Debian's python3-venv is missing leaves a .venv without
    pip; once python3-venv is installed, .ci/run makes it again rather than fail in pip."""
    calls, _ = ci_run(tmp_path, managed=True, venv=True, pip=False)
    assert f"{tmp_path / 'bin' / 'python3'} -m venv .venv" in calls, calls
    calls, _ = ci_run(tmp_path / "with-pip", managed=True, venv=True)
    assert not [c for c in calls if "-m venv" in c]  # negative control: a whole one is kept


def test_ci_run_without_apt_names_the_missing_programs_and_goes_on(tmp_path):
    """macOS (or not root): no apt-get; the programs the tests drive are named, the checks run."""
    calls, stderr = ci_run(tmp_path, managed=False, venv=True, programs=())
    assert "not installed: chromium slurm-wlm munge" in " ".join(stderr.split()), stderr
    assert ".venv/bin/python -m pytest -n 2 --dist loadfile" in calls
    calls, stderr = ci_run(tmp_path / "all", managed=False, venv=True)
    assert "not installed" not in stderr  # negative control: nothing missing, nothing said


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
