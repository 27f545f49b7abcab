"""The one-node SLURM cluster the tests of this folder submit to (``onenode.py``), once a
session; ``SLURM_CONF`` points the SLURM commands at it meanwhile."""

from __future__ import annotations

import shutil

import pytest

from slurm.onenode import running


@pytest.fixture(scope="session")
def slurm_cluster():
    missing = [c for c in ("munged", "slurmctld", "slurmd", "sbatch") if not shutil.which(c)]
    if missing:
        pytest.fail(
            f"Debian's slurm-wlm and munge are not installed ({', '.join(missing)} missing): "
            "run .ci/run or `apt-get install slurm-wlm munge`"
        )
    with running() as cluster:
        yield cluster


@pytest.fixture
def slurm(slurm_cluster):
    """The cluster, with no job left once the test ends (a test's leftovers are its failure)."""
    slurm_cluster.cancel_all()
    slurm_cluster.wait_empty(30)
    yield slurm_cluster
    left = slurm_cluster.wait_empty(60)
    slurm_cluster.cancel_all()
    assert not left, f"jobs left in the queue: {left}"
