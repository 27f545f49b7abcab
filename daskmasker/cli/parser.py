"""The ``daskmasker`` command line's parser: commands, options, value types, and the
rewriting of Python parameter names into the flags users typed."""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, NoReturn, TypeVar

from daskmasker import __version__

logger = logging.getLogger("daskmasker")


_STANDARDIZE: dict[str, Literal["zscore_sample", "zscore", "psc"] | None] = {
    "zscore_sample": "zscore_sample",
    "zscore": "zscore",
    "psc": "psc",
    "none": None,
}


_TARGETS: dict[str, Literal["data", "mask", "maps"] | None] = {
    "data": "data",
    "mask": "mask",
    "maps": "maps",
    "none": None,
}


_FLAGS = {
    r" \(Python: overwrite=True\)": "",
    r"overwrite=True": "--overwrite",
    r"'?\bt_r\b'?": "--t-r",
    r"'?\blow_pass\b'?": "--low-pass",
    r"'?\bhigh_pass\b'?": "--high-pass",
    r"'?\bsmoothing_fwhm\b'?": "--smoothing-fwhm",
    r"'?\bresampling_target\b'?": "--resampling-target",
    r"--resampling-target is None": "--resampling-target is none",  # the value the user typed
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
    r"parameter 'min_coverage'": "parameter --min-coverage",
    r"region names were": "region names (--labels) were",
}


_Number = TypeVar("_Number", int, float)
_Command = Callable[..., argparse.ArgumentParser]
"""``command(name, summary, description=None)``: a new command's parser."""


_ENTITIES = ("sub", "ses", "task", "acq", "ce", "dir", "rec", "run", "echo")


# nilearn's kinds (daskmasker.compute.connectivity.KINDS, not imported: --help loads no numpy)
KINDS = ("correlation", "partial correlation", "tangent", "covariance", "precision")


class CommandError(Exception):
    """A wrong command-line value: reported as argparse does, with exit code 2."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default (argparse's ``(default: ...)``), unless the
    help text already says it; on/off flags read ``(default: off)``, required ones
    ``(required)``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.dest in ("help", "version"):
            return text
        if action.required:
            return f"{text} (required)"
        if action.nargs == 0:
            return f"{text} (default: {'on' if action.default is True else 'off'})"
        if action.default is None:
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse's parser, where a command's unknown option is reported by the command itself
    (its usage, not the top-level one) with the closest option it has ("did you mean ...?",
    as Python 3.12's ``suggest_on_error``, which 3.10 and 3.11 lack), and a misspelt command
    with the closest command.  A misspelt required option (``--mpas``) is named too, before
    argparse's "the following arguments are required: --maps", which it causes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._given: list[str] = []  # the arguments of the last parse (see error)

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads, one implementation
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:  # a command: its options are all known here
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._suggest(extras)}")
        return namespace, extras

    def _suggest(self, extras: list[str], options: list[str] | None = None) -> str:
        if options is None:
            options = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        for word in extras:
            if word.startswith("-"):
                close = difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.6)
                if close:
                    return f" (did you mean {close[0]}?)"
        return ""

    def add_subparsers(self, **kwargs: Any) -> argparse._SubParsersAction:
        action = super().add_subparsers(**kwargs)
        self.commands = action.choices  # the command parsers, by name
        return action

    def _unknown(self) -> list[str]:
        """The given ``--options`` this command does not know (nor abbreviates)."""
        options = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        words = [w for w in self._given if w.startswith("--") and w != "--"]
        return [w for w in words if not any(o.startswith(w.split("=")[0]) for o in options)]

    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required") and self._subparsers is None:
            unknown = self._unknown()  # a misspelt required option: say so first
            if unknown:  # the closest of the missing ones first (--mpas: --maps, not --mask)
                missing = re.findall(r"--[\w-]+", message)
                hint = self._suggest(unknown, missing) or self._suggest(unknown)
                message = f"unrecognized arguments: {' '.join(unknown)}{hint}; {message}"
        wrong = re.match(r"argument command: invalid choice: '([^']*)'", message)
        if wrong and getattr(self, "commands", None):
            close = difflib.get_close_matches(wrong.group(1), list(self.commands), n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
        super().error(message)


def _positive(kind: type[_Number]) -> Callable[[str], _Number]:
    def parse(text: str) -> _Number:
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


def _add_verbosity(parser: argparse.ArgumentParser, default: str | None) -> None:
    """-v/-q on the command and on each subcommand (``default=SUPPRESS`` there, so a flag given
    before the subcommand is not reset by the subcommand's default)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help="more messages (debug level) (default: off)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if default is None else default,
        help="only warnings and errors: no progress, no summary (default: off)",
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
        "--scheduler",
        metavar="ADDRESS",
        help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786",
    )
    running.add_argument(
        "--scheduler-file", metavar="PATH", help="a scheduler file written by `dask scheduler`"
    )
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
        help="worker processes: a local cluster of N single-threaded workers, or at most N "
        "SLURM workers (default: none, threads of this process; with --cluster slurm, what "
        "the partition's CPUs hold, at most one per run)",
    )
    slurm = parser.add_argument_group(
        "SLURM jobs (--cluster slurm; default: a jobqueue config's 'jobqueue: slurm:', else "
        "sized from the partition)"
    )
    slurm.add_argument(
        "--partition",
        "--queue",
        dest="partition",
        default=None,
        help="SLURM partition (default: the jobqueue config's, else SLURM's default partition)",
    )
    slurm.add_argument(
        "--cores",
        type=_positive(int),
        default=None,
        help="cores per job, one single-threaded worker each (default: 1)",
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
        help="network interface of the scheduler and workers, e.g. ib0 (default: none, "
        "dask's choice)",
    )


def _add_execution(parser: argparse.ArgumentParser) -> None:
    add_cluster_options(parser)
    _add_storage_options(parser)
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress line on stderr (-q hides the messages too)",
    )
    _add_verbosity(parser, argparse.SUPPRESS)


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-options",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="fsspec options for URLs, e.g. '{\"anon\": true}' or "
        '\'{"client_kwargs": {"endpoint_url": "http://..."}}\' (default: none: fsspec\'s '
        "own, e.g. the AWS_* environment)",
    )


def _add_bids_output(
    parser: argparse.ArgumentParser, maps_source: str, per_maps: bool = False
) -> None:
    """``--bids-dir`` (alias ``--tsv-dir``) and ``--atlas-label``, for extract and clean
    (``per_maps``: one ``--atlas-label`` per ``--maps``, repeated)."""
    parser.add_argument(
        "--tsv-dir",
        "--bids-dir",
        dest="tsv_dir",
        default=None,
        metavar="DIR",
        help="also write BIDS derivatives here: sub-X/[ses-Y/]func/*_timeseries.tsv + .json "
        "(default: none, the Zarr store only)",
    )
    parser.add_argument(
        "--atlas-label",
        default=None,
        metavar="LABEL",
        action="append" if per_maps else "store",
        help="atlas-<label> of the BIDS file names"
        + ("; repeat, one per --maps in order" if per_maps else "")
        + f" (default: from the {maps_source} file name)",
    )


def _get_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="daskmasker",
        description="Extract time series of overlapping maps from fMRI, out of core, on Dask.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"daskmasker {__version__}")
    _add_verbosity(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=summary, description=description or summary, formatter_class=_HelpFormatter
        )

    convert = command("convert", "convert a NIfTI image into a Zarr store (NIfTI-Zarr, OME-Zarr)")
    convert.add_argument("source", help="NIfTI file (.nii, .nii.gz, .hdr/.img), local path or URL")
    convert.add_argument("store", help="output Zarr store, local path or URL")
    convert.add_argument(
        "--chunk-volumes",
        type=_positive(int),
        default=None,
        metavar="N",
        help="volumes (maps) per chunk (default: chosen for ~32 MiB chunks)",
    )
    convert.add_argument(
        "--maps",
        action="store_true",
        help="the source is an atlas: store its 4th axis as maps (channels, 'c'), not time",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing store")
    _add_execution(convert)

    extract = command(
        "extract",
        "extract region time series into a Zarr store",
        "Extract the maps' time series of each image into one resumable Zarr store.",
    )
    extract.add_argument("imgs", nargs="+", help="4D images: NIfTI files, Zarr stores or URLs")
    extract.add_argument(
        "--maps",
        required=True,
        action="append",
        help="4D maps image; repeat for several atlases: one store per atlas, OUT/<atlas>.zarr, "
        "each image read once for all of them",
    )
    extract.add_argument(
        "--mask",
        default=None,
        help="3D mask image (default: none, every voxel of the maps' or the data's grid)",
    )
    extract.add_argument(
        "--confounds",
        nargs="+",
        default=None,
        metavar="TSV",
        help="one confounds file (tsv/csv, e.g. fMRIPrep's *_desc-confounds_timeseries.tsv) per "
        "image, in the images' order (a quoted glob pattern is expanded, sorted); with BIDS "
        "names a file's sub/ses/task/run must match its image's (default: none)",
    )
    extract.add_argument(
        "--confounds-columns",
        default=None,
        metavar="A,B,...",
        help="columns of the confounds files to use, by name or glob pattern "
        "(e.g. 'trans_*,rot_*,csf'); n/a at the start of a column (fMRIPrep's "
        "derivative columns) takes the column's first value, as nilearn's load_confounds "
        "does; any other n/a is an error (default: all columns)",
    )
    extract.add_argument(
        "--out",
        required=True,
        help="output Zarr store (path or URL); an existing batch store is resumed",
    )
    _add_bids_output(extract, "--maps", per_maps=True)
    extract.add_argument("--overwrite", action="store_true", help="start a batch store afresh")
    extract.add_argument(
        "--labels",
        default=None,
        help="region names: a .txt (one per line) or a .tsv/.csv table "
        "(default: none, regions numbered)",
    )
    extract.add_argument(
        "--no-report",
        action="store_true",
        help="do not write the reports beside each store (OUT.masker.html, OUT.report.html; "
        "with several --maps, OUT/<atlas>.zarr.masker.html and OUT/<atlas>.zarr.report.html)",
    )
    masker = extract.add_argument_group("masker parameters (as nilearn's NiftiMapsMasker)")
    _add_signal_options(masker, standardize="none", needs_t_r=" (needs a TR)")
    masker.add_argument(
        "--no-standardize-confounds",
        action="store_true",
        help="do not z-score the confounds before regressing them out "
        "(nilearn's standardize_confounds=False)",
    )
    masker.add_argument(
        "--high-variance-confounds",
        action="store_true",
        help="add the 5 highest-variance voxels' series (nilearn's high_variance_confounds)",
    )
    masker.add_argument(
        "--t-r",
        type=_positive(float),
        default=None,
        metavar="SECONDS",
        help="repetition time in seconds (default: the images' headers)",
    )
    masker.add_argument(
        "--resampling-target",
        choices=sorted(_TARGETS),
        default="data",
        help="the grid everything is resampled to: the data's, the mask's, the maps', or none "
        "(all must already share one grid)",
    )
    masker.add_argument(
        "--no-allow-overlap",
        action="store_true",
        help="refuse maps that overlap (nilearn's allow_overlap=False)",
    )
    masker.add_argument(
        "--keep-masked-maps",
        action="store_true",
        help="keep maps that the mask empties, with zero signals (nilearn's keep_masked_maps)",
    )
    masker.add_argument(
        "--filter",
        choices=["butterworth", "cosine"],
        default=None,
        help="filter of --low-pass/--high-pass (nilearn's clean_args filter) "
        "(default: butterworth)",
    )
    _add_execution(extract)

    demo = command(
        "demo",
        "generate synthetic data, convert it and extract",
        "Generate DiFuMo-like maps, a mask and a synthetic run (reused when the parameters "
        "are unchanged), convert the run to Zarr, extract its time series and write the report.",
    )
    demo.add_argument("--out", default="daskmasker-demo", help="folder to write into")
    demo.add_argument(
        "--volumes", type=_positive(int), default=120, help="volumes of the synthetic run"
    )
    demo.add_argument("--maps", type=_positive(int), default=64, help="number of DiFuMo-like maps")
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    _add_execution(demo)
    _add_store_commands(command)
    _add_connectivity(command)
    _add_bids_app(command)
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


def _add_signal_options(masker: argparse._ArgumentGroup, standardize: str, needs_t_r: str) -> None:
    """The masker options ``extract`` and ``bids`` share (``bids`` reads the TR from the BOLD
    sidecars, so its filters need no ``--t-r``): one definition, one help text."""
    masker.add_argument(
        "--standardize",
        choices=sorted(_STANDARDIZE),
        default=standardize,
        help="scale each region's series: z-score (sample or population std), percent signal "
        "change, or none",
    )
    masker.add_argument("--detrend", action="store_true", help="remove each series' linear trend")
    masker.add_argument(
        "--low-pass",
        type=_positive(float),
        default=None,
        metavar="HZ",
        help=f"low-pass cut-off in Hz{needs_t_r} (default: none, no low-pass)",
    )
    masker.add_argument(
        "--high-pass",
        type=_positive(float),
        default=None,
        metavar="HZ",
        help=f"high-pass cut-off in Hz{needs_t_r} (default: none, no high-pass)",
    )
    masker.add_argument(
        "--smoothing-fwhm",
        type=_positive(float),
        default=None,
        metavar="MM",
        help="Gaussian smoothing FWHM in mm before extraction (default: none, no smoothing)",
    )
    masker.add_argument(
        "--dtype",
        type=_dtype,
        default=None,
        help="dtype of the signals, e.g. float32, or 'auto' "
        "(default: none, as nilearn's dtype=None)",
    )


def _add_bids_app(command: _Command) -> None:
    """``bids FMRIPREP_DIR OUTPUT_DIR participant|group``, a BIDS App over fMRIPrep outputs."""
    app = command(
        "bids",
        "BIDS App: region time series of an fMRIPrep dataset, denoised as nilearn does",
        "Extract the maps' time series of every preprocessed BOLD run of an fMRIPrep "
        "derivatives dataset, denoised with nilearn's load_confounds_strategy (participant "
        "level: a batch store per atlas in OUTPUT_DIR/stores and BIDS derivatives in OUTPUT_DIR), "
        "then the study's connectomes and summary (group level: OUTPUT_DIR/group).",
    )
    app.add_argument("fmriprep_dir", help="fMRIPrep's output folder (BIDS derivatives)")
    app.add_argument("output_dir", help="where the derivatives are written")
    app.add_argument(
        "analysis_level",
        choices=["participant", "group"],
        help="participant: extract each run; group: the study's connectomes and summary",
    )
    select = app.add_argument_group("selection (BIDS Apps)")
    select.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="subjects to process (with or without sub-) (default: all)",
    )
    select.add_argument(
        "--session-label",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="sessions to process (with or without ses-) (default: all)",
    )
    select.add_argument(
        "--task",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="task-<label> of the BOLD runs (default: all)",
    )
    select.add_argument(
        "--space",
        default="MNI152NLin2009cAsym",
        help="space-<label> of the BOLD runs (ICA-AROMA's are in MNI152NLin6Asym)",
    )
    select.add_argument(
        "--res", default=None, help="res-<label> of the BOLD runs (default: any, or none)"
    )
    select.add_argument(
        "--bids-filter-file",
        default=None,
        metavar="JSON",
        help='fMRIPrep-style filters: {"bold": {"session": "1", "acquisition": null}} '
        "(default: none)",
    )
    app.add_argument(
        "--maps",
        action="append",
        default=None,
        help="4D maps image (participant level); repeat for several atlases (required at the "
        "participant level)",
    )
    app.add_argument(
        "--atlas-label",
        action="append",
        default=None,
        help="atlas-<label> of each --maps, in order (default: from the maps file name)",
    )
    app.add_argument(
        "--mask",
        default=None,
        help="3D mask applied to the maps (all runs) (default: none, each run's brain mask only)",
    )
    app.add_argument("--overwrite", action="store_true", help="start the batch stores afresh")
    denoise = app.add_argument_group(
        "denoising (nilearn's load_confounds_strategy; parameters default to the strategy's)"
    )
    denoise.add_argument(
        "--denoise-strategy",
        choices=["simple", "scrubbing", "compcor", "ica_aroma"],
        default="simple",
        help="nilearn's load_confounds_strategy denoise_strategy",
    )
    strategy = " (default: the strategy's)"
    denoise.add_argument(
        "--motion",
        choices=_CONFOUND_MODELS,
        default=None,
        help="motion parameters' model" + strategy,
    )
    denoise.add_argument(
        "--wm-csf",
        choices=_CONFOUND_MODELS,
        default=None,
        help="white matter and CSF signals' model" + strategy,
    )
    denoise.add_argument(
        "--global-signal",
        choices=_CONFOUND_MODELS,
        default=None,
        help="global signal's model" + strategy,
    )
    denoise.add_argument(
        "--scrub",
        type=int,
        default=None,
        metavar="N",
        help="shortest segment of volumes kept between scrubbed ones" + strategy,
    )
    denoise.add_argument(
        "--fd-threshold",
        type=_positive(float),
        default=None,
        metavar="MM",
        help="framewise displacement above which a volume is scrubbed, in mm" + strategy,
    )
    denoise.add_argument(
        "--std-dvars-threshold",
        type=_positive(float),
        default=None,
        help="standardized DVARS above which a volume is scrubbed" + strategy,
    )
    denoise.add_argument(
        "--compcor", choices=_COMPCOR, default=None, help="CompCor components' kind" + strategy
    )
    denoise.add_argument(
        "--n-compcor",
        type=_n_compcor,
        default=None,
        help="number of CompCor components, a number or 'all'" + strategy,
    )
    denoise.add_argument(
        "--demean",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="demean the confounds (the strategies' default: yes)",
    )
    masker = app.add_argument_group("masker parameters (as nilearn's NiftiMapsMasker)")
    _add_signal_options(masker, standardize="zscore_sample", needs_t_r="")
    masker.add_argument(
        "--min-coverage",
        type=_fraction,
        default=None,
        help="regions with less of their map's weight inside a run's brain mask are NaN in "
        "that run (as xcp_d's --min-coverage) (default: off)",
    )
    group = app.add_argument_group("group level")
    group.add_argument(
        "--connectivity-kind",
        action="append",
        default=None,
        help="connectome kinds (default: correlation); needs daskmasker.batch.connectome",
    )
    _add_execution(app)


def _add_store_commands(command: _Command) -> None:
    """``info STORE``, ``clean STORE --out NEW`` and ``upgrade OLD NEW`` (batch stores, no
    image read)."""
    info = command("info", "describe a batch store: runs, shapes, fingerprint status")
    info.add_argument("store", help="batch store (path or URL)")
    _add_storage_options(info)
    info.add_argument(
        "--report",
        action="store_true",
        help="also write the study report (runs, kept frames, carpet plot) as STORE.report.html",
    )

    upgrade = command(
        "upgrade",
        "convert a batch store of the previous layout (a Zarr group per run) to the "
        "current one (packed runs and study arrays); the old store is left as it is",
    )
    upgrade.add_argument("store", help="batch store of the previous layout (path or URL)")
    upgrade.add_argument("out", help="new batch store (path or URL; must not exist)")
    _add_storage_options(upgrade)

    clean = command(
        "clean", "re-clean a batch store's raw region signals into a new store (no image read)"
    )
    clean.add_argument("store", help="batch store written by extract (or clean)")
    clean.add_argument("--out", required=True, help="new batch store (path or URL)")
    _add_bids_output(clean, "store's maps")
    clean.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    _add_storage_options(clean)
    keep = argparse.SUPPRESS  # a parameter not given keeps the store's value
    store = " (default: the store's)"
    new = clean.add_argument_group("cleaning parameters (default: the store's)")
    new.add_argument(
        "--standardize",
        choices=sorted(_STANDARDIZE),
        default=keep,
        help="scale each region's series" + store,
    )
    new.add_argument(
        "--standardize-confounds",
        action=argparse.BooleanOptionalAction,
        default=keep,
        help="z-score the confounds before regressing them out" + store,
    )
    new.add_argument(
        "--detrend",
        action=argparse.BooleanOptionalAction,
        default=keep,
        help="remove each series' linear trend" + store,
    )
    for flag, what, unit in (
        ("--low-pass", "low-pass cut-off", "Hz"),
        ("--high-pass", "high-pass cut-off", "Hz"),
        ("--t-r", "repetition time", "s"),
    ):
        new.add_argument(
            flag, type=_number_or_none, default=keep, help=f"{what} in {unit}, or 'none'{store}"
        )
    new.add_argument(
        "--filter",
        choices=["butterworth", "cosine"],
        default=keep,
        help="filter of the cut-offs" + store,
    )
    new.add_argument("--dtype", default=keep, help="dtype of the stored signals" + store)
    conf = new.add_mutually_exclusive_group()
    conf.add_argument(
        "--confounds",
        nargs="+",
        default=keep,
        metavar="TSV",
        help="one file per run, in the order of `info`" + store,
    )
    conf.add_argument(
        "--no-confounds", action="store_true", help="clean without confounds (default: off)"
    )
    new.add_argument(
        "--all-volumes",
        action="store_true",
        help="drop the stored sample masks (default: off, keep them)",
    )
    refused = clean.add_argument_group(
        "refused (they act on the voxels: extract again); listed so that giving one says so"
    )
    why = "refused: extract again (default: the store's)"
    refused.add_argument("--smoothing-fwhm", type=float, default=keep, help=why)
    refused.add_argument("--high-variance-confounds", action="store_true", default=keep, help=why)
    refused.add_argument("--mask", default=keep, help=why)
    refused.add_argument("--maps", default=keep, help=why)


def _add_connectivity(command: _Command) -> None:
    """``connectivity STORE --kind K [--kind K2 ...] --out BIDS_DIR``."""
    conn = command(
        "connectivity",
        "connectivity matrices of a batch store's runs as BIDS *_relmat.tsv",
        "Each run's connectivity matrix (nilearn's ConnectivityMeasure: Ledoit-Wolf "
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


_DENOISING = re.compile(r"denoising '[^']*' was .*?(?=; |\n|$)")
"""A refused rerun's denoising record (nilearn's names, such as the strategy's 'high_pass',
are values there, not parameters): left as written."""


def _flag_names(message: str) -> str:
    """``message`` with the Python parameter names replaced by the command line's flags."""
    kept = _DENOISING.findall(message)
    parts = _DENOISING.split(message)
    for pattern, flag in _FLAGS.items():
        parts = [re.sub(pattern, flag, part) for part in parts]
    return "".join(part + (kept[i] if i < len(kept) else "") for i, part in enumerate(parts))
