"""The ``daskmasker`` command: ``convert``, ``extract``, ``demo``, ``info`` and ``clean``.

``main(argv=None)`` returns the exit code (nibabel's pattern), so tests call it directly.
Only the standard library is imported here: ``--help`` and ``--version`` load neither Dask nor
xarray; each command imports what it uses.  A command checks its parameters (values, input files,
the output path, then the images' headers) before any voxel is read, and reports a wrong one as
argparse does, ``daskmasker extract: error: ...`` with exit code 2, naming the flag.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence

from daskmasker import __version__

logger = logging.getLogger("daskmasker")

_STANDARDIZE = {"zscore_sample": "zscore_sample", "zscore": "zscore", "psc": "psc", "none": None}
_TARGETS = {"data": "data", "mask": "mask", "maps": "maps", "none": None}
# Python parameter names in messages from the library, as the flags that set them
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
        "--chunk-volumes", type=_positive(int), default=None, help="volumes per chunk"
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
    extract.add_argument(
        "--tsv-dir",
        "--bids-dir",
        dest="tsv_dir",
        default=None,
        help="also write BIDS derivatives here: sub-X/[ses-Y/]func/*_timeseries.tsv + .json",
    )
    extract.add_argument(
        "--atlas-label",
        default=None,
        help="atlas-<label> of the BIDS file names (default: from the --maps file name)",
    )
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
    """``info STORE`` and ``clean STORE --out NEW`` (batch stores, no image read)."""
    info = sub.add_parser("info", help="describe a batch store: runs, shapes, fingerprint status")
    info.add_argument("store", help="batch store (path or URL)")
    info.add_argument("--storage-options", type=json.loads, default=None, metavar="JSON")

    clean = sub.add_parser(
        "clean", help="re-clean a batch store's raw region signals into a new store (no image read)"
    )
    clean.add_argument("store", help="batch store written by extract (or clean)")
    clean.add_argument("--out", required=True, help="new batch store (path or URL)")
    clean.add_argument(
        "--tsv-dir",
        "--bids-dir",
        dest="tsv_dir",
        default=None,
        help="also write BIDS derivatives here: sub-X/[ses-Y/]func/*_timeseries.tsv + .json",
    )
    clean.add_argument(
        "--atlas-label",
        default=None,
        help="atlas-<label> of the BIDS file names (default: from the store's maps file name)",
    )
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


def _masker_from_args(args: argparse.Namespace):
    from daskmasker.masker.estimator import NiftiMapsMasker

    return NiftiMapsMasker(
        maps_img=args.maps,
        mask_img=args.mask,
        allow_overlap=not args.no_allow_overlap,
        smoothing_fwhm=args.smoothing_fwhm,
        standardize=_STANDARDIZE[args.standardize],
        standardize_confounds=not args.no_standardize_confounds,
        high_variance_confounds=args.high_variance_confounds,
        detrend=args.detrend,
        low_pass=args.low_pass,
        high_pass=args.high_pass,
        t_r=args.t_r,
        dtype=args.dtype,
        resampling_target=_TARGETS[args.resampling_target],
        keep_masked_maps=args.keep_masked_maps,
        clean_args={"filter": args.filter} if args.filter else None,
        region_names=args.labels,
    )


def _client(args: argparse.Namespace):
    from daskmasker.runtime.client import dask_client

    return dask_client(
        scheduler=args.scheduler, scheduler_file=args.scheduler_file, workers=args.workers
    )


def _progress(args: argparse.Namespace, label: str, client):
    from daskmasker.runtime.progress import task_progress

    where = "the local threaded scheduler" if client is None else client.scheduler.address
    logger.debug("%s: running on %s", label, where)
    return task_progress(label, client, enabled=not (args.quiet or args.no_progress))


def _is_url(path: str) -> bool:
    return "://" in str(path)


def _check_exists(flag: str, paths: Sequence[str]) -> None:
    """Local inputs (URLs are checked when opened): a glob pattern must match something."""
    for path in paths:
        if path is None or _is_url(path):
            continue
        local = os.path.expanduser(path)
        found = glob.glob(local) if glob.has_magic(local) else os.path.exists(local)
        if not found:
            raise CommandError(f"{flag}: no such file or directory: '{path}'")


def _output(path: str, storage_options: dict | None):
    """The output's location if the path exists, else None."""
    from daskmasker.io.fs import Location

    location = Location(path, storage_options)
    return location if location.fs.exists(location.root) else None


def _check_filters(args: argparse.Namespace, t_r: float | None, source: str) -> None:
    """The band against the TR: nilearn needs a TR to filter; the CLI refuses cut-offs at or
    above Nyquist (nilearn lowers a low-pass there with a warning) and an empty band."""
    if args.low_pass and args.high_pass and args.high_pass >= args.low_pass:
        raise CommandError(
            f"--high-pass {args.high_pass} Hz must be lower than --low-pass {args.low_pass} Hz"
        )
    flags = [f for f in ("low_pass", "high_pass") if getattr(args, f)]
    if not flags:
        return
    names = " and ".join(f"--{f.replace('_', '-')}" for f in flags)
    if t_r is None:
        raise CommandError(f"{names} need the repetition time: pass --t-r ({source})")
    nyquist = 0.5 / t_r
    for flag in flags:
        value = getattr(args, flag)
        if value >= nyquist:
            raise CommandError(
                f"--{flag.replace('_', '-')} {value} Hz is not below the Nyquist frequency "
                f"{nyquist:g} Hz of TR={t_r:g} s ({source})"
            )


def _header_t_r(images: dict) -> tuple[float | None, str]:
    """The images' common TR from their headers, and where it comes from."""
    found = {path: image.attrs.get("t_r") for path, image in images.items()}
    values = set(found.values())
    if len(values) > 1:
        listed = ", ".join(f"{p}: {'none' if v is None else f'{v:g} s'}" for p, v in found.items())
        raise CommandError(
            f"the images' headers give different TRs ({listed}): run them separately, or pass "
            "--t-r if one TR is right for all"
        )
    t_r = values.pop()
    first = next(iter(found))
    more = f" and {len(found) - 1} other image(s)" if len(found) > 1 else ""
    where = f"the header of {first}{more}"
    return t_r, (f"no TR in {where}" if t_r is None else f"from {where}")


def _entities(path: str) -> dict[str, str]:
    name = os.path.basename(str(path).rstrip("/"))
    return dict(re.findall(rf"(?:^|_)({'|'.join(_ENTITIES)})-([a-zA-Z0-9]+)", name))


def _confound_files(args: argparse.Namespace) -> list[str] | None:
    """One confounds file per image, paired in order, checked against BIDS entities."""
    if args.confounds is None:
        if args.confounds_columns:
            raise CommandError("--confounds-columns needs --confounds")
        return None
    files = []
    for value in args.confounds:
        local = os.path.expanduser(value)
        files += sorted(glob.glob(local)) if glob.has_magic(local) else [value]
    if len(files) != len(args.imgs):
        raise CommandError(
            f"--confounds: {len(files)} file(s) for {len(args.imgs)} image(s); give one per "
            "image, in the images' order"
        )
    for img, conf in zip(args.imgs, files, strict=True):
        a, b = _entities(img), _entities(conf)
        differ = {k for k in a.keys() & b.keys() if a[k] != b[k]}
        if differ:
            raise CommandError(
                f"--confounds: '{conf}' is not for image '{img}' ("
                + ", ".join(f"{k}-{b[k]} vs {k}-{a[k]}" for k in sorted(differ))
                + "); give them in the images' order"
            )
    _check_exists("--confounds", files)
    return files


def _read_confounds(path: str, columns: str | None, n_scans: int):
    """The chosen columns of a confounds file, leading n/a filled; a file without a header row
    (plain numbers, as nilearn reads them) is passed on as it is."""
    from daskmasker.masker.fmriprep import ColumnNotFoundError, confounds_table, has_header

    if not has_header(path):
        if columns:
            raise CommandError(f"--confounds-columns: '{path}' has no header row of column names")
        return path
    names = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    try:
        return confounds_table(path, names, n_scans)
    except ColumnNotFoundError as exc:
        raise CommandError(f"--confounds-columns: {exc}") from None
    except ValueError as exc:
        raise CommandError(f"--confounds: {exc}") from None


def _check_extract(args: argparse.Namespace) -> tuple[float | None, list | None]:
    """Everything that can be checked before voxels are read; returns the TR and confounds."""
    _check_exists("input image", args.imgs)
    _check_exists("--maps", [args.maps] if isinstance(args.maps, str) else args.maps)
    _check_exists("--mask", [args.mask])
    files = _confound_files(args)
    if args.t_r is not None:
        _check_filters(args, args.t_r, "--t-r")
    location = _output(args.out, args.storage_options)
    several = isinstance(args.maps, list) and len(args.maps) > 1  # --out: a folder of stores
    if location is not None and not args.overwrite and not several:
        import zarr

        from daskmasker.batch.store import BATCH_ATTR

        try:
            ours = BATCH_ATTR in zarr.open_group(location.store, mode="r").attrs
        except Exception:  # not a Zarr group at all
            ours = False
        if not ours:
            raise CommandError(
                f"--out '{args.out}' exists and is not a daskmasker batch store; choose "
                "another --out (--overwrite only replaces daskmasker batch stores)"
            )
        logger.info("resuming into %s: runs already complete there are skipped", args.out)
    from daskmasker.io.load import load_image

    # opened lazily: only headers are read
    images = {p: load_image(p, storage_options=args.storage_options) for p in args.imgs}
    t_r = args.t_r
    if t_r is None:
        t_r, source = _header_t_r(images)
        _check_filters(args, t_r, source)
        if t_r is not None:
            logger.info("using TR=%g s %s (pass --t-r to override)", t_r, source)
    confounds = None
    if files is not None:
        confounds = [
            _read_confounds(path, args.confounds_columns, images[img].shape[0])
            for img, path in zip(args.imgs, files, strict=True)
        ]
    return t_r, confounds


def _convert(args: argparse.Namespace) -> int:
    _check_exists("source", [args.source])
    if not args.overwrite and _output(args.store, args.storage_options) is not None:
        raise CommandError(f"'{args.store}' exists; pass --overwrite to replace it")
    from daskmasker.io.convert import to_zarr

    start = time.perf_counter()
    with _client(args) as client, _progress(args, "convert", client):
        out = to_zarr(
            args.source,
            args.store,
            chunks=args.chunk_volumes,
            overwrite=args.overwrite,
            storage_options=args.storage_options,
        )
    logger.info("converted %s -> %s in %.1f s", args.source, out, time.perf_counter() - start)
    return 0


def _extract(args: argparse.Namespace) -> int:
    args.t_r, confounds = _check_extract(args)
    from daskmasker.batch.run import run_batch

    if len(args.maps) > 1:
        return _extract_many(args)
    args.maps = args.maps[0]

    masker = _masker_from_args(args)
    logger.debug("masker: %r", masker)
    start = time.perf_counter()
    with _client(args) as client, _progress(args, "extract", client):
        result = run_batch(
            masker,
            args.imgs,
            args.out,
            confounds=confounds,
            overwrite=args.overwrite,
            storage_options=args.storage_options,
            tsv_dir=args.tsv_dir,
            atlas_label=args.atlas_label,
            client=client,
        )
    if not args.no_report and result.done:
        target = f"{args.out.rstrip('/')}/report.html"
        report = masker.generate_report(displayed_maps=min(10, masker.n_elements_))
        report.save_as_html(target, storage_options=args.storage_options)
        logger.info("report: %s", target)
    logger.info("%s in %.1f s", result, time.perf_counter() - start)
    for name, error in result.failed.items():
        logger.error("FAILED %s: %s", name, _flag_names(error))
    return 1 if result.failed else 0


def _extract_many(args: argparse.Namespace) -> int:
    """``extract`` with several ``--maps``: a batch store per atlas (``OUT/<atlas>.zarr``, named
    after the maps file), every image read once for all the atlases that still need it.  Each
    store keeps what ``run_batch``'s does (fingerprints, raw signals, audit metadata): a rerun
    skips unchanged runs and refuses changed ones, per atlas."""
    import re
    from pathlib import PurePosixPath

    import dask

    from daskmasker.batch.jobs import item_confounds, source
    from daskmasker.batch.record import Recorder, index_entry
    from daskmasker.batch.run import make_items
    from daskmasker.batch.store import Index, completed, open_output, write_item
    from daskmasker.io.fs import Location
    from daskmasker.masker.many import fit_many

    if args.tsv_dir is not None:
        raise CommandError("--bids-dir takes one --maps (run extract once per atlas for BIDS)")
    atlases = list(args.maps)
    names = [re.sub(r"\.nii(\.gz)?$|\.zarr/?$", "", PurePosixPath(m).name) for m in atlases]
    if len(set(names)) < len(names):
        names = [f"atlas-{i}_{n}" for i, n in enumerate(names)]
    args.maps = atlases[0]
    params = _masker_from_args(args).get_params(deep=False)
    del params["maps_img"]
    so = args.storage_options
    items = make_items(args.imgs, confounds=args.confounds)
    start = time.perf_counter()
    failed = done = 0
    with _client(args):
        maskers = fit_many(atlases, source(items[0].image, so), **params)
        outputs = []
        for name, masker in zip(names, maskers, strict=True):
            store = f"{args.out.rstrip('/')}/{name}.zarr"
            attrs = masker._attrs_params()
            group, mapper = open_output(store, attrs, args.overwrite, so)
            recorder = Recorder(masker, attrs, so).prepare()
            todo, _ = recorder.split(group, items, completed(group, Location(store, so)))
            outputs.append((masker, recorder, mapper, Index(group), {i.name for i in todo}))
        try:
            for item in items:
                wanted = [out for out in outputs if item.name in out[4]]
                if not wanted:
                    continue
                try:
                    lazies = [
                        m._lazy_outputs(source(item.image, so), *item_confounds(m, item))
                        for m, *_ in wanted
                    ]
                    # one computation: the atlases' linked maps share the image's reads
                    values = dask.compute(*[(sig.data, raw, conf) for sig, conf, raw in lazies])
                except Exception as exc:  # recorded; the batch goes on
                    logger.error("FAILED %s: %s: %s", item.name, type(exc).__name__, exc)
                    failed += 1
                    continue
                for (_, recorder, mapper, index, _), lazy, (sig, raw, conf) in zip(
                    wanted, lazies, values, strict=True
                ):
                    ds = recorder.dataset(item, lazy[0], sig, raw, conf)
                    write_item(mapper, item.name, ds)
                    index.add(item.name, index_entry(ds))
                done += 1
        finally:
            for out in outputs:
                out[3].flush()
    logger.info(
        "%d images x %d atlases into %s/{%s}.zarr: %d extracted, %d already complete, "
        "%d failed in %.1f s",
        len(items),
        len(atlases),
        args.out,
        ",".join(names),
        done,
        len(items) - done - failed,
        failed,
        time.perf_counter() - start,
    )
    return 1 if failed else 0


def _demo(args: argparse.Namespace) -> int:
    from daskmasker.demo import run_demo

    with _client(args) as client:
        run_demo(
            args.out,
            n_volumes=args.volumes,
            n_maps=args.maps,
            seed=args.seed,
            client=client,
            progress=not (args.quiet or args.no_progress),
            verbose=not args.quiet,
        )
    return 0


def _flag_names(message: str) -> str:
    for pattern, flag in _FLAGS.items():
        message = re.sub(pattern, flag, message)
    return message


def _info(args: argparse.Namespace) -> int:
    from daskmasker.batch.read import store_info

    print(store_info(args.store, storage_options=args.storage_options))
    return 0


_CLEAN_FLAGS = {
    "standardize_confounds": "standardize_confounds",
    "detrend": "detrend",
    "low_pass": "low_pass",
    "high_pass": "high_pass",
    "t_r": "t_r",
    "dtype": "dtype",
    "smoothing_fwhm": "smoothing_fwhm",
    "high_variance_confounds": "high_variance_confounds",
    "mask": "mask_img",
    "maps": "maps_img",
}


def _clean(args: argparse.Namespace) -> int:
    from daskmasker.batch.reclean import KEEP, reclean

    params = {name: getattr(args, flag) for flag, name in _CLEAN_FLAGS.items() if flag in args}
    if "standardize" in args:
        params["standardize"] = _STANDARDIZE[args.standardize]
    if "filter" in args:
        params["clean_args"] = {"filter": args.filter}
    confounds = None if args.no_confounds else getattr(args, "confounds", KEEP)
    start = time.perf_counter()
    result = reclean(
        args.store,
        args.out,
        confounds=confounds,
        sample_masks=None if args.all_volumes else KEEP,
        overwrite=args.overwrite,
        storage_options=args.storage_options,
        tsv_dir=args.tsv_dir,
        atlas_label=args.atlas_label,
        **params,
    )
    print(f"{result} in {time.perf_counter() - start:.1f} s")
    for name, error in result.failed.items():
        print(f"FAILED {name}: {error}", file=sys.stderr)
    return 1 if result.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _get_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    commands = {
        "convert": _convert,
        "extract": _extract,
        "demo": _demo,
        "info": _info,
        "clean": _clean,
    }
    try:
        return commands[args.command](args)
    except (
        CommandError,
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        OSError,
    ) as exc:
        print(f"daskmasker {args.command}: error: {_flag_names(str(exc))}", file=sys.stderr)
        return 2
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
