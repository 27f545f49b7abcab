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
}


_ENTITIES = ("sub", "ses", "task", "acq", "ce", "dir", "rec", "run", "echo")


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


def _add_execution(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler")
    where.add_argument("--scheduler-file", metavar="PATH", help="a Dask scheduler file")
    where.add_argument(
        "--workers",
        type=_positive(int),
        metavar="N",
        help="start a local cluster of N worker processes",
    )
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
        "--no-report", action="store_true", help="do not write the job's report.html in --out"
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
    return parser


def _add_store_commands(sub) -> None:
    """``info STORE``, ``clean STORE --out NEW`` and ``upgrade OLD NEW`` (batch stores, no
    image read)."""
    info = sub.add_parser("info", help="describe a batch store: runs, shapes, fingerprint status")
    info.add_argument("store", help="batch store (path or URL)")
    info.add_argument("--storage-options", type=json.loads, default=None, metavar="JSON")

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


def _number_or_none(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _flag_names(message: str) -> str:
    for pattern, flag in _FLAGS.items():
        message = re.sub(pattern, flag, message)
    return message
