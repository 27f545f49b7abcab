"""The local process gets the allocator settings of daskmasker's workers (glibc's ``mallopt``).

What they save (page faults, system time) is measured by the benchmarks, not here: a 600-volume
transform took 150,000-190,000 page faults and 0.7-0.9 s of system time without them, ~50,000 and
0.2-0.35 s with them (``benchmarks/results/2026-12-06-fit.md``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# in a fresh process (glibc's settings are the process's): what a transform applied
JOB = """
import json, sys

import nibabel as nib
import numpy as np

from daskmasker import NiftiMapsMasker
from daskmasker.runtime import client

before = client.tune_local_allocator.cache_info().currsize
data = np.random.default_rng(0).normal(size=(8, 8, 8, 20)).astype(np.float32)
maps = np.zeros((8, 8, 8, 2))
maps[:4, ..., 0] = maps[4:, ..., 1] = 1.0
img, atlas = nib.Nifti1Image(data, np.eye(4)), nib.Nifti1Image(maps, np.eye(4))
NiftiMapsMasker(atlas).fit_transform(img)
done = client.tune_local_allocator.cache_info().currsize
print(json.dumps({"before": before, "after": done, "applied": client.tune_local_allocator()}))
"""


def _job(**env) -> dict:
    # glibc reads MALLOC_* at start (a LocalCluster of another test may have exported them)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", JOB],
        capture_output=True,
        text=True,
        check=True,
        env={**clean, **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_local_transform_applies_the_workers_settings():
    """The first computation of this process's threads applies ``worker-environ``'s MALLOC_*
    settings once (none before it)."""
    result = _job()
    assert (result["before"], result["after"]) == (0, 1)
    assert result["applied"] == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_setting_the_environment_gives_is_left_alone():
    """glibc read an exported ``MALLOC_TOP_PAD_`` at start: it is not set again."""
    assert _job(MALLOC_TOP_PAD_=str(2**20))["applied"] == ["MALLOC_MMAP_THRESHOLD_"]
