"""The ``daskmasker`` command line's parser: commands, options, value types, and the
rewriting of Python parameter names into the flags users typed."""

from __future__ import annotations

import argparse
import json
import logging
import re

from daskmasker import __version__

logger = logging.getLogger("daskmasker")


_STANDARDIZE = {"zscore_sample": "zscore_sample", "zscore": "zscore", "psc": "psc", "none": None}


_TARGETS = {"data": "data", "mask": "mask", "maps": "maps", "none": None}


_FLAGS = {
    r" \(Python: overwrite=True\)": "",
    r"overwrite=True": "--overwrite",
    r"'?\bt_r\b'?": "--t-r",
    r"'?\blow_pass\b'?": "--low-pass",
    r"'?\bhigh_pass\b'?": "--high-pass",
    r"'?\bsmoothing_fwhm\b'?": "--smoothing-fwhm",
    r"'?\bresampling_target\b'?": "--resampling-target",
    r"'?\bstorage_options\b'?": "--storage-options",
    r"'?\bhigh_variance_confounds\b'?": "--high-variance-confounds",
    r"'?\bstandardize_confounds\b'?": "--standardize-confounds",
    r"'?\bdetrend\b'?": "--detrend",
    r"'?\bmask_img\b'?": "--mask",
    r"'?\bmaps_img\b'?": "--maps",
    # a rerun refused (:func:`daskmasker.batch.fingerprint.differences`): the flag that differs
    r"parameter 'standardize'": "parameter --standardize",
    r"parameter 'dtype'": "parameter --dtype",
    r"parameter 'keep_masked_maps'": "parameter --keep-masked-maps",
    r"parameter 'allow_overlap'": "parameter allow-overlap (--no-allow-overlap)",
    r"parameter 'clean_args'": "parameter --filter",
    r"region names were": "region names (--labels) were",
}


_ENTITIES = ("sub", "ses", "task", "acq", "ce", "dir", "rec", "run", "echo")


# nilearn's kinds (daskmasker.compute.connectivity.KINDS, not imported: --help loads no numpy)
KINDS = ("correlation", "partial correlation", "tangent", "covariance", "precision")


class CommandError(Exception):
    """A wrong command-line value: reported as argparse does, with exit code 2."""


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object {{...}}, got {text!r}")
    return value


def _dtype(text: str) -> str:
    if text == "auto":
        return text
    import numpy as np

    try:
        dtype = np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"not a numpy dtype: {text!r}") from None
    if dtype == np.bool_:
        raise argparse.ArgumentTypeError("cannot be bool")
    return text


def _add_verbosity(parser: argparse.ArgumentParser, default) -> None:
    """-v/-q on the command and on each subcommand (``default=SUPPRESS`` there, so a flag given
    before the subcommand is not reset by the subcommand's default)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help="more messages (debug level)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if default is None else default,
        help="only warnings and errors: no progress, no summary",
    )


CLUSTERS = ("local", "slurm")


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Where a command's work runs: ``--cluster {local,slurm}``, ``--scheduler``,
    ``--scheduler-file``, ``--workers`` and the SLURM jobs' sizes, the same options for every
    command that computes.  :func:`daskmasker.cli.commands.client_from_args` turns them into
    the client the command runs on."""
    where = parser.add_argument_group(
        "where the work runs",
        "default: threads of this process; --workers N: N local worker processes; "
        "--cluster slurm: workers as SLURM jobs submitted from this login node "
        "(dask-jobqueue), cancelled when the command ends or is interrupted",
    )
    running = where.add_mutually_exclusive_group()
    running.add_argument(
        "--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler"
    )
    running.add_argument("--scheduler-file", metavar="PATH", help="a Dask scheduler file")
    running.add_argument(
        "--cluster",
        choices=CLUSTERS,
        default="local",
        help="start the workers here (local) or as SLURM jobs (slurm)",
    )
    where.add_argument(
        "--workers",
        type=_positive(int),
        metavar="N",
        help="worker processes: a local cluster of N, or at most N SLURM workers "
        "(default there: what the partition's CPUs hold, at most one per run)",
    )
    slurm = parser.add_argument_group(
        "SLURM jobs (--cluster slurm; default: a jobqueue config's 'jobqueue: slurm:', else "
        "sized from the partition)"
    )
    slurm.add_argument(
        "--partition", "--queue", dest="partition", default=None, help="SLURM partition"
    )
    slurm.add_argument(
        "--cores",
        type=_positive(int),
        default=None,
        help="cores per job, one single-threaded worker each (default 1)",
    )
    slurm.add_argument(
        "--memory",
        default=None,
        metavar="SIZE",
        help="memory per job, e.g. 8GB (default: a core's share of a node, per core)",
    )
    slurm.add_argument(
        "--walltime",
        default=None,
        metavar="HH:MM:SS",
        help="time limit per job (default: the partition's)",
    )
    slurm.add_argument(
        "--jobqueue-config",
        default=None,
        metavar="YAML",
        help="dask-jobqueue settings ('jobqueue: slurm:' section, e.g. "
        "deploy/slurm/jobqueue.yaml); default: dask's config (~/.config/dask/jobqueue.yaml)",
    )
    slurm.add_argument(
        "--log-dir",
        default=None,
        metavar="DIR",
        help="the jobs' logs (default: daskmasker-slurm-logs/ beside --out)",
    )
    slurm.add_argument(
        "--interface",
        default=None,
        metavar="NAME",
        help="network interface of the scheduler and workers, e.g. ib0",
    )


def _add_execution(parser: argparse.ArgumentParser) -> None:
    add_cluster_options(parser)
    parser.add_argument(
        "--storage-options",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="fsspec options for URLs, e.g. '{\"anon\": true}' or an endpoint_url",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress line on stderr (-q hides the messages too)",
    )
    _add_verbosity(parser, argparse.SUPPRESS)


def _add_bids_output(parser: argparse.ArgumentParser, maps_source: str) -> None:
    """``--bids-dir`` (alias ``--tsv-dir``) and ``--atlas-label``, for extract and clean."""
    parser.add_argument(
        "--tsv-dir",
        "--bids-dir",
        dest="tsv_dir",
        default=None,
        help="also write BIDS derivatives here: sub-X/[ses-Y/]func/*_timeseries.tsv + .json",
    )
    parser.add_argument(
        "--atlas-label",
        default=None,
        help=f"atlas-<label> of the BIDS file names (default: from the {maps_source} file name)",
    )


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daskmasker",
        description="Extract time series of overlapping maps from fMRI, out of core, on Dask.",
    )
    parser.add_argument("--version", action="version", version=f"daskmasker {__version__}")
    _add_verbosity(parser, None)
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser("convert", help="convert a NIfTI image into a Zarr store")
    convert.add_argument("source", help="NIfTI file (.nii, .nii.gz), local path or URL")
    convert.add_argument("store", help="output Zarr store, local path or URL")
    convert.add_argument(
        "--chunk-volumes", type=_positive(int), default=None, help="volumes (maps) per chunk"
    )
    convert.add_argument(
        "--maps",
        action="store_true",
        help="the source is an atlas: store its 4th axis as maps (channels, 'c'), not time",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing store")
    _add_execution(convert)

    extract = sub.add_parser(
        "extract",
        help="extract region time series into a Zarr store",
        description="Extract the maps' time series of each image into one resumable Zarr store.",
    )
    extract.add_argument("imgs", nargs="+", help="4D images: NIfTI files, Zarr stores or URLs")
    extract.add_argument(
        "--maps",
        required=True,
        action="append",
        help="4D maps image; repeat for several atlases: one store per atlas, OUT/<atlas>.zarr, "
        "each image read once for all of them",
    )
    extract.add_argument("--mask", default=None, help="3D mask image")
    extract.add_argument(
        "--confounds",
        nargs="+",
        default=None,
        metavar="TSV",
        help="one confounds file (tsv/csv, e.g. fMRIPrep's *_desc-confounds_timeseries.tsv) per "
        "image, in the images' order (a quoted glob pattern is expanded, sorted); with BIDS "
        "names a file's sub/ses/task/run must match its image's",
    )
    extract.add_argument(
        "--confounds-columns",
        default=None,
        metavar="A,B,...",
        help="columns of the confounds files to use, by name or glob pattern "
        "(e.g. 'trans_*,rot_*,csf'); default all.  n/a at the start of a column (fMRIPrep's "
        "derivative columns) takes the column's first value, as nilearn's load_confounds "
        "does; any other n/a is an error",
    )
    extract.add_argument(
        "--out",
        required=True,
        help="output Zarr store (path or URL); an existing batch store is resumed",
    )
    _add_bids_output(extract, "--maps")
    extract.add_argument("--overwrite", action="store_true", help="start a batch store afresh")
    extract.add_argument(
        "--labels", default=None, help="region names: a .txt (one per line) or a .tsv/.csv table"
    )
    extract.add_argument(
        "--no-report",
        action="store_true",
        help="do not write the reports beside --out (OUT.masker.html, OUT.report.html)",
    )
    masker = extract.add_argument_group("masker parameters (as nilearn's NiftiMapsMasker)")
    masker.add_argument("--standardize", choices=sorted(_STANDARDIZE), default="none")
    masker.add_argument("--no-standardize-confounds", action="store_true")
    masker.add_argument("--high-variance-confounds", action="store_true")
    masker.add_argument("--detrend", action="store_true")
    masker.add_argument("--low-pass", type=_positive(float), default=None, help="Hz")
    masker.add_argument("--high-pass", type=_positive(float), default=None, help="Hz")
    masker.add_argument(
        "--t-r",
        type=_positive(float),
        default=None,
        help="repetition time (s); default: the images' headers",
    )
    masker.add_argument("--smoothing-fwhm", type=_positive(float), default=None, help="mm")
    masker.add_argument("--resampling-target", choices=sorted(_TARGETS), default="data")
    masker.add_argument("--no-allow-overlap", action="store_true")
    masker.add_argument("--keep-masked-maps", action="store_true")
    masker.add_argument("--dtype", type=_dtype, default=None)
    masker.add_argument("--filter", choices=["butterworth", "cosine"], default=None)
    _add_execution(extract)

    demo = sub.add_parser("demo", help="generate synthetic data, convert it and extract")
    demo.add_argument("--out", default="daskmasker-demo", help="folder to write into")
    demo.add_argument(
        "--volumes", type=_positive(int), default=120, help="volumes of the synthetic run"
    )
    demo.add_argument("--maps", type=_positive(int), default=64, help="number of DiFuMo-like maps")
    demo.add_argument("--seed", type=int, default=0)
    _add_execution(demo)
    _add_store_commands(sub)
    _add_connectivity(sub)
    _add_bids_app(sub)
    return parser


_CONFOUND_MODELS = ("basic", "power2", "derivatives", "full")
_COMPCOR = (
    "anat_combined",
    "anat_separated",
    "temporal",
    "temporal_anat_combined",
    "temporal_anat_separated",
)


def _n_compcor(text: str) -> int | str:
    return "all" if text == "all" else _positive(int)(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _add_bids_app(sub) -> None:
    """``bids FMRIPREP_DIR OUTPUT_DIR participant|group``, a BIDS App over fMRIPrep outputs."""
    app = sub.add_parser(
        "bids",
        help="BIDS App: region time series of an fMRIPrep dataset, denoised as nilearn does",
        description="Extract the maps' time series of every preprocessed BOLD run of an fMRIPrep "
        "derivatives dataset, denoised with nilearn's load_confounds_strategy (participant "
        "level: a batch store per atlas in OUTPUT_DIR/stores and BIDS derivatives in OUTPUT_DIR), "
        "then the study's connectomes and summary (group level: OUTPUT_DIR/group).",
    )
    app.add_argument("fmriprep_dir", help="fMRIPrep's output folder (BIDS derivatives)")
    app.add_argument("output_dir", help="where the derivatives are written")
    app.add_argument("analysis_level", choices=["participant", "group"])
    select = app.add_argument_group("selection (BIDS Apps)")
    select.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="subjects to process (with or without sub-); default all",
    )
    select.add_argument("--session-label", nargs="+", default=None, metavar="LABEL")
    select.add_argument("--task", nargs="+", default=None, metavar="LABEL")
    select.add_argument(
        "--space",
        default="MNI152NLin2009cAsym",
        help="space-<label> of the BOLD runs (ICA-AROMA's are in MNI152NLin6Asym)",
    )
    select.add_argument("--res", default=None, help="res-<label> of the BOLD runs")
    select.add_argument(
        "--bids-filter-file",
        default=None,
        metavar="JSON",
        help='fMRIPrep-style filters: {"bold": {"session": "1", "acquisition": null}}',
    )
    app.add_argument(
        "--maps",
        action="append",
        default=None,
        help="4D maps image (participant level); repeat for several atlases",
    )
    app.add_argument(
        "--atlas-label",
        action="append",
        default=None,
        help="atlas-<label> of each --maps, in order (default: from the maps file name)",
    )
    app.add_argument("--mask", default=None, help="3D mask applied to the maps (all runs)")
    app.add_argument("--overwrite", action="store_true", help="start the batch stores afresh")
    denoise = app.add_argument_group(
        "denoising (nilearn's load_confounds_strategy; parameters default to the strategy's)"
    )
    denoise.add_argument(
        "--denoise-strategy",
        choices=["simple", "scrubbing", "compcor", "ica_aroma"],
        default="simple",
    )
    denoise.add_argument("--motion", choices=_CONFOUND_MODELS, default=None)
    denoise.add_argument("--wm-csf", choices=_CONFOUND_MODELS, default=None)
    denoise.add_argument("--global-signal", choices=_CONFOUND_MODELS, default=None)
    denoise.add_argument("--scrub", type=int, default=None, help="shortest segment kept")
    denoise.add_argument("--fd-threshold", type=_positive(float), default=None, help="mm")
    denoise.add_argument("--std-dvars-threshold", type=_positive(float), default=None)
    denoise.add_argument("--compcor", choices=_COMPCOR, default=None)
    denoise.add_argument("--n-compcor", type=_n_compcor, default=None, help="a number or 'all'")
    denoise.add_argument(
        "--demean",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="demean the confounds (the strategies' default: yes)",
    )
    masker = app.add_argument_group("masker parameters (as nilearn's NiftiMapsMasker)")
    masker.add_argument("--standardize", choices=sorted(_STANDARDIZE), default="zscore_sample")
    masker.add_argument("--detrend", action="store_true")
    masker.add_argument("--low-pass", type=_positive(float), default=None, help="Hz")
    masker.add_argument("--high-pass", type=_positive(float), default=None, help="Hz")
    masker.add_argument("--smoothing-fwhm", type=_positive(float), default=None, help="mm")
    masker.add_argument("--dtype", type=_dtype, default=None)
    masker.add_argument(
        "--min-coverage",
        type=_fraction,
        default=None,
        help="regions with less of their map's weight inside a run's brain mask are NaN in "
        "that run (as xcp_d's --min-coverage; default off)",
    )
    group = app.add_argument_group("group level")
    group.add_argument(
        "--connectivity-kind",
        action="append",
        default=None,
        help="connectome kinds (default: correlation); needs daskmasker.batch.connectome",
    )
    _add_execution(app)


def _add_store_commands(sub) -> None:
    """``info STORE``, ``clean STORE --out NEW`` and ``upgrade OLD NEW`` (batch stores, no
    image read)."""
    info = sub.add_parser("info", help="describe a batch store: runs, shapes, fingerprint status")
    info.add_argument("store", help="batch store (path or URL)")
    info.add_argument("--storage-options", type=json.loads, default=None, metavar="JSON")
    info.add_argument(
        "--report",
        action="store_true",
        help="also write the study report (runs, kept frames, carpet plot) as STORE.report.html",
    )

    upgrade = sub.add_parser(
        "upgrade",
        help="convert a batch store of the previous layout (a Zarr group per run) to the "
        "current one (packed runs and study arrays); the old store is left as it is",
    )
    upgrade.add_argument("store", help="batch store of the previous layout (path or URL)")
    upgrade.add_argument("out", help="new batch store (path or URL; must not exist)")
    upgrade.add_argument(
        "--storage-options", type=json.loads, default=None, metavar="JSON", help="fsspec options"
    )

    clean = sub.add_parser(
        "clean", help="re-clean a batch store's raw region signals into a new store (no image read)"
    )
    clean.add_argument("store", help="batch store written by extract (or clean)")
    clean.add_argument("--out", required=True, help="new batch store (path or URL)")
    _add_bids_output(clean, "store's maps")
    clean.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    clean.add_argument("--storage-options", type=json.loads, default=None, metavar="JSON")
    keep = argparse.SUPPRESS  # a parameter not given keeps the store's value
    new = clean.add_argument_group("cleaning parameters (default: the store's)")
    new.add_argument("--standardize", choices=sorted(_STANDARDIZE), default=keep)
    new.add_argument("--standardize-confounds", action=argparse.BooleanOptionalAction, default=keep)
    new.add_argument("--detrend", action=argparse.BooleanOptionalAction, default=keep)
    for flag, unit in (("--low-pass", "Hz"), ("--high-pass", "Hz"), ("--t-r", "s")):
        new.add_argument(flag, type=_number_or_none, default=keep, help=f"{unit}, or 'none'")
    new.add_argument("--filter", choices=["butterworth", "cosine"], default=keep)
    new.add_argument("--dtype", default=keep)
    conf = new.add_mutually_exclusive_group()
    conf.add_argument(
        "--confounds", nargs="+", default=keep, help="one file per run, in the order of `info`"
    )
    conf.add_argument("--no-confounds", action="store_true", help="clean without confounds")
    new.add_argument("--all-volumes", action="store_true", help="drop the stored sample masks")
    refused = clean.add_argument_group("refused (they act on the voxels: extract again)")
    refused.add_argument("--smoothing-fwhm", type=float, default=keep)
    refused.add_argument("--high-variance-confounds", action="store_true", default=keep)
    refused.add_argument("--mask", default=keep)
    refused.add_argument("--maps", default=keep)


def _add_connectivity(sub) -> None:
    """``connectivity STORE --kind K [--kind K2 ...] --out BIDS_DIR``."""
    conn = sub.add_parser(
        "connectivity",
        help="connectivity matrices of a batch store's runs as BIDS *_relmat.tsv",
        description="Each run's connectivity matrix (nilearn's ConnectivityMeasure: Ledoit-Wolf "
        "covariance) as BIDS-derivative *_meas-<Measure>_relmat.tsv with JSON sidecars, beside "
        "the runs' time series, and the group means under group/.",
    )
    conn.add_argument("store", help="batch store (path or URL) written by extract or clean")
    conn.add_argument(
        "--kind",
        action="append",
        choices=KINDS,
        required=True,
        help="nilearn's kind; repeat for several (computed together, the store read once)",
    )
    conn.add_argument(
        "--out", required=True, help="BIDS derivatives folder (usually extract's --bids-dir)"
    )
    _add_execution(conn)


def _number_or_none(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _flag_names(message: str) -> str:
    for pattern, flag in _FLAGS.items():
        message = re.sub(pattern, flag, message)
    return message
