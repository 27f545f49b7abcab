"""``daskmasker connectivity STORE --kind ... --out BIDS`` end to end, on a store written by
``run_batch``: relmat files beside the time series TSVs, nilearn's numbers.

Written against the study store's contract (``open_timeseries(store)``: signals (run, time,
region) NaN-padded past each run's ``n_frames``, with that coordinate): it needs the store
redesign of issue 25 merged.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from nilearn.connectome import ConnectivityMeasure

from daskmasker import NiftiMapsMasker, open_timeseries, run_batch
from daskmasker.cli import main
from daskmasker.cli.parser import KINDS
from daskmasker.compute import connectivity


def test_the_parser_offers_nilearns_kinds():
    assert KINDS == connectivity.KINDS


def test_connectivity_command_writes_relmats_beside_the_time_series(study, tmp_path):
    out, bids = str(tmp_path / "out.zarr"), tmp_path / "bids"
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], standardize="zscore_sample")
    imgs = [r["img"] for r in study["runs"]]
    keep = np.arange(3, 38)
    result = run_batch(masker, imgs, out, sample_masks=[keep, None], tsv_dir=str(bids))
    assert not result.failed
    code = main(
        ["connectivity", out, "--kind", "correlation", "--kind", "tangent", "--out", str(bids)]
    )
    assert code == 0
    series = sorted(bids.rglob("*_timeseries.tsv"))
    runs = [pd.read_csv(p, sep="\t").to_numpy() for p in series]
    assert [len(r) for r in runs] == [len(keep), study["runs"][1]["n"]]
    measure = ConnectivityMeasure(kind="tangent")
    expected = {"PearsonCorrelation": ConnectivityMeasure(kind="correlation").fit_transform(runs)}
    expected["Tangent"] = measure.fit_transform(runs)
    for i, path in enumerate(series):
        for label, matrices in expected.items():
            relmat = path.with_name(path.name.replace("_timeseries", f"_meas-{label}_relmat"))
            table = pd.read_csv(relmat, sep="\t")
            assert list(table.columns) == list(pd.read_csv(path, sep="\t").columns)
            np.testing.assert_allclose(table.to_numpy(), matrices[i], atol=1e-10)
            sidecar = json.loads(relmat.with_suffix(".json").read_text())
            assert sidecar["daskmasker"]["n_frames"] == len(runs[i])
    group = sorted((bids / "group").glob("*_meas-Tangent_desc-mean_relmat.tsv"))
    assert len(group) == 1
    np.testing.assert_allclose(
        pd.read_csv(group[0], sep="\t").to_numpy(), measure.mean_, atol=1e-10
    )
    assert open_timeseries(out)["n_frames"].values.tolist() == [len(r) for r in runs]
