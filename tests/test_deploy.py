"""deploy/: the recipes parse, refer to commands and options that exist, and run as written."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

DEPLOY = Path(__file__).parents[1] / "deploy"
IMAGE = re.search(r'ref.name="([^"]+)"', (DEPLOY / "docker" / "Dockerfile").read_text()).group(1)


def _help(*cmd) -> str:
    return subprocess.run([*cmd, "--help"], capture_output=True, text=True, check=True).stdout


def _containers(doc):
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "containers" in node:
                found.extend(node["containers"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


@pytest.mark.parametrize("name", ["daskcluster.yaml", "daskjob.yaml"])
def test_kubernetes_manifests(name):
    doc = yaml.safe_load((DEPLOY / "kubernetes" / name).read_text())
    assert doc["apiVersion"] == "kubernetes.dask.org/v1"
    assert doc["kind"] == {"daskcluster.yaml": "DaskCluster", "daskjob.yaml": "DaskJob"}[name]
    containers = _containers(doc)
    assert containers and all(c["image"] == IMAGE for c in containers)
    worker_help, scheduler_help = _help("dask", "worker"), _help("dask", "scheduler")
    extract_help = _help(sys.executable, "-m", "daskmasker.cli", "extract")
    for container in containers:
        args = " ".join(container["args"])
        for cmd, help_text in (
            ("dask worker", worker_help),
            ("dask scheduler", scheduler_help),
            ("daskmasker extract", extract_help),
        ):
            if cmd in args:
                segment = args.split(cmd, 1)[1]
                for option in re.findall(r"(--[a-z][a-z-]+)", segment):
                    assert option in help_text, f"{cmd} has no option {option}"


def test_dockerfile_installs_existing_extras():
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    extras = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in re.findall(r'pip install[^"]*"\.\[([a-z0-9,]+)\]"', text)[0].split(","):
        assert extra in extras
    assert "EXPOSE 8786 8787" in text


def test_every_recipe_sets_the_worker_environment():
    """The workers of each deployment get daskmasker's WORKER_ENVIRON, at its values: the
    image, both Kubernetes manifests and the sbatch script (--cluster slurm's job script:
    tests/slurm)."""
    from daskmasker.runtime.client import WORKER_ENVIRON

    def assigned(text: str, keyword: str) -> dict[str, str]:
        """``NAME=value`` pairs of the lines starting with ``keyword`` (ENV, export)."""
        pairs = [
            word.split("=", 1)
            for line in text.splitlines()
            if line.strip().startswith(keyword + " ")
            for word in shlex.split(line.strip())[1:]
        ]
        return dict(pairs)

    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert assigned(dockerfile, "ENV").items() >= WORKER_ENVIRON.items()
    sbatch = (DEPLOY / "slurm" / "extract.sbatch").read_text()
    assert assigned(sbatch, "export").items() >= WORKER_ENVIRON.items()
    for manifest in ("daskcluster.yaml", "daskjob.yaml"):
        doc = yaml.safe_load((DEPLOY / "kubernetes" / manifest).read_text())
        workers = [c for c in _containers(doc) if "worker" in c["args"]]
        assert workers
        for container in workers:
            env = {item["name"]: item["value"] for item in container["env"]}
            assert env.items() >= WORKER_ENVIRON.items()


# --- Kubernetes: Kubernetes' schemas and the Dask operator's CRDs, offline -------------------

KUBERNETES_VERSION = "1.31"
CRDS = "operator/deployment/helm/dask-kubernetes-operator/crds"


def _closed(schema):
    """An OpenAPI v3 schema of a CRD as the API server applies it to ``kubectl apply
    --validate=strict``: a field not declared is an error (unless the schema keeps unknown
    fields), ``x-kubernetes-int-or-string`` takes either type."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd_validators() -> dict:
    """``{kind: validator}`` of the CRDs the dask-kubernetes wheel ships (their
    openAPIV3Schema, closed by :func:`_closed`, the resource's own fields added)."""
    from importlib.resources import files

    import jsonschema

    validators = {}
    for path in (files("dask_kubernetes") / CRDS).iterdir():
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        schema = _closed(version["schema"]["openAPIV3Schema"])
        schema["properties"].update(
            {"apiVersion": {"const": "kubernetes.dask.org/v1"}, "kind": {"type": "string"}}
        )
        schema["properties"]["metadata"] = {"type": "object"}
        validators[crd["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(schema)
    return validators


def _pod_specs(doc) -> list[tuple[str, dict]]:
    """The pod specs and service specs inside a DaskCluster/DaskJob, by kind."""
    spec = doc["spec"]
    cluster = spec["cluster"]["spec"] if doc["kind"] == "DaskJob" else spec
    found = [("Pod", cluster["worker"]["spec"]), ("Pod", cluster["scheduler"]["spec"])]
    found.append(("Service", cluster["scheduler"]["service"]))
    if doc["kind"] == "DaskJob":
        found.append(("Pod", spec["job"]["spec"]))
    return found


def validate_manifest(doc) -> None:
    """Raise if ``doc`` is not a valid DaskCluster/DaskJob: the operator's CRD schema (with
    undeclared fields refused), then each embedded pod and service spec against Kubernetes'
    own schema (kubernetes-validate, strict: unknown fields refused)."""
    import jsonschema
    import kubernetes_validate

    error = jsonschema.exceptions.best_match(_crd_validators()[doc["kind"]].iter_errors(doc))
    if error is not None:
        raise error
    for kind, spec in _pod_specs(doc):
        resource = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", ["daskcluster.yaml", "daskjob.yaml"])
def test_kubernetes_manifests_validate(name):
    validate_manifest(yaml.safe_load((DEPLOY / "kubernetes" / name).read_text()))


@pytest.mark.parametrize(
    "path, value",
    [
        (("spec", "worker", "replica"), 4),  # a misspelt field of the operator's
        (("spec", "worker", "replicas"), "four"),
        (("spec", "worker", "spec", "containers", 0, "imagePullPolicy"), ["Always"]),
        (("spec", "scheduler", "spec", "containers", 0, "port"), 8786),  # not a container field
        (("spec", "scheduler", "service", "type"), {"ClusterIP": True}),
    ],
)
def test_a_broken_manifest_fails_validation(path, value):
    """The negative control: each of these edits of daskcluster.yaml is refused."""
    import jsonschema
    import kubernetes_validate

    doc = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        validate_manifest(doc)


def test_readme_installs_the_operator_whose_crds_are_checked():
    from importlib.metadata import version

    readme = (DEPLOY / "README.md").read_text()
    assert f"dask-kubernetes-operator --version {version('dask-kubernetes')}" in readme
    assert f"docker push {IMAGE}" in readme


# --- the Dockerfile's build steps, without a Docker engine -------------------------------------


def _dockerfile():
    from dockerfile_parse import DockerfileParser

    with open(DEPLOY / "docker" / "Dockerfile", "rb") as f:
        return [(s["instruction"], s["value"]) for s in DockerfileParser(fileobj=f).structure]


def _ignored(path: str) -> bool:
    """Whether Dockerfile.dockerignore leaves ``path`` (relative to the context) out."""
    import fnmatch

    patterns = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().split()
    parts = Path(path).parts
    return any(
        fnmatch.fnmatch(path, p) or fnmatch.fnmatch(parts[0], p) or fnmatch.fnmatch(path, f"*/{p}")
        for p in patterns
    )


def test_dockerfile_copies_what_exists_and_is_not_ignored():
    context = DEPLOY.parent  # `docker build -f deploy/docker/Dockerfile ... .`
    copies = [shlex.split(v) for i, v in _dockerfile() if i == "COPY"]
    assert copies
    for *sources, _ in copies:
        for source in sources:
            assert (context / source).exists(), f"COPY {source}: not in the build context"
            assert not _ignored(source), f"COPY {source}: left out by Dockerfile.dockerignore"
    assert _ignored("tests/test_deploy.py") and _ignored("data/x.nii.gz")  # the control


def test_dockerfile_pip_step_runs_as_written(tmp_path):
    """The RUN steps that install run as written in a throwaway virtual environment whose
    WORKDIR holds the COPY sources; its daskmasker and the image's CMD (`dask scheduler`)
    start.  The environment sees this one's packages (--system-site-packages): pip fetches
    only the build requirements (setuptools, wheel) from the package index, as the image's
    build does."""
    import shutil

    steps = _dockerfile()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    workdir = tmp_path / "context"
    for instruction, value in steps:
        if instruction == "WORKDIR" and not workdir.exists():
            workdir.mkdir()
        if instruction == "COPY":
            *sources, target = shlex.split(value)
            for source in sources:
                src = DEPLOY.parent / source
                dest = workdir / target / (src.name if target.endswith("/") else "")
                if src.is_dir():
                    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(src, dest)
    pip_steps = [v for i, v in steps if i == "RUN" and v.startswith("pip ")]
    assert pip_steps
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PATH=f"{venv}/bin:{env['PATH']}")
    for command in pip_steps:
        done = subprocess.run(
            ["sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import daskmasker; print(daskmasker.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where
    (cmd,) = [yaml.safe_load(v) for i, v in steps if i == "CMD"]
    for command in (["daskmasker", "--version"], [*cmd, "--help"]):
        subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, check=True)
