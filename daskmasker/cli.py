"""The ``daskmasker`` command: ``convert``, ``extract`` and ``demo``.

``main(argv=None)`` returns the exit code (nibabel's pattern), so tests call it directly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

_STANDARDIZE = {"zscore_sample": "zscore_sample", "zscore": "zscore", "psc": "psc", "none": None}
_TARGETS = {"data": "data", "mask": "mask", "maps": "maps", "none": None}


def _add_execution(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler")
    where.add_argument("--scheduler-file", metavar="PATH", help="a Dask scheduler file")
    where.add_argument(
        "--workers", type=int, metavar="N", help="start a local cluster of N worker processes"
    )
    parser.add_argument(
        "--storage-options",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="fsspec options for URLs, e.g. '{\"anon\": true}' or an endpoint_url",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daskmasker",
        description="Extract time series of overlapping maps from fMRI, out of core, on Dask.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser("convert", help="convert a NIfTI image into a Zarr store")
    convert.add_argument("source", help="NIfTI file (.nii, .nii.gz), local path or URL")
    convert.add_argument("store", help="output Zarr store, local path or URL")
    convert.add_argument("--chunk-volumes", type=int, default=None, help="volumes per chunk")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing store")
    _add_execution(convert)

    extract = sub.add_parser("extract", help="extract region time series into a Zarr store")
    extract.add_argument("imgs", nargs="+", help="4D images: NIfTI files, Zarr stores or URLs")
    extract.add_argument("--maps", required=True, help="4D maps image")
    extract.add_argument("--mask", default=None, help="3D mask image")
    extract.add_argument(
        "--confounds", nargs="+", default=None, help="one confounds file (csv/tsv) per image"
    )
    extract.add_argument("--out", required=True, help="output Zarr store (path or URL)")
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
        "--no-report", action="store_true", help="do not write the job's report.html in --out"
    )
    masker = extract.add_argument_group("masker parameters (as nilearn's NiftiMapsMasker)")
    masker.add_argument("--standardize", choices=sorted(_STANDARDIZE), default="none")
    masker.add_argument("--no-standardize-confounds", action="store_true")
    masker.add_argument("--high-variance-confounds", action="store_true")
    masker.add_argument("--detrend", action="store_true")
    masker.add_argument("--low-pass", type=float, default=None, help="Hz")
    masker.add_argument("--high-pass", type=float, default=None, help="Hz")
    masker.add_argument("--t-r", type=float, default=None, help="repetition time (s)")
    masker.add_argument("--smoothing-fwhm", type=float, default=None, help="mm")
    masker.add_argument("--resampling-target", choices=sorted(_TARGETS), default="data")
    masker.add_argument("--no-allow-overlap", action="store_true")
    masker.add_argument("--keep-masked-maps", action="store_true")
    masker.add_argument("--dtype", default=None)
    masker.add_argument("--filter", choices=["butterworth", "cosine"], default=None)
    _add_execution(extract)

    demo = sub.add_parser("demo", help="generate synthetic data, convert it and extract")
    demo.add_argument("--out", default="daskmasker-demo", help="folder to write into")
    demo.add_argument("--volumes", type=int, default=120, help="volumes of the synthetic run")
    demo.add_argument("--maps", type=int, default=64, help="number of DiFuMo-like maps")
    demo.add_argument("--seed", type=int, default=0)
    _add_execution(demo)
    return parser


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
    )


def _client(args: argparse.Namespace):
    from daskmasker.runtime.client import dask_client

    return dask_client(
        scheduler=args.scheduler, scheduler_file=args.scheduler_file, workers=args.workers
    )


def _convert(args: argparse.Namespace) -> int:
    from daskmasker.io.convert import to_zarr

    start = time.perf_counter()
    with _client(args):
        out = to_zarr(
            args.source,
            args.store,
            chunks=args.chunk_volumes,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            storage_options=args.storage_options,
        )
    print(f"converted {args.source} -> {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from daskmasker.batch.run import run_batch

    masker = _masker_from_args(args)
    start = time.perf_counter()
    with _client(args) as client:
        result = run_batch(
            masker,
            args.imgs,
            args.out,
            confounds=args.confounds,
            overwrite=args.overwrite,
            storage_options=args.storage_options,
            tsv_dir=args.tsv_dir,
            atlas_label=args.atlas_label,
            client=client,
            progress=not args.no_progress,
        )
    if not args.no_report and result.done:
        target = f"{args.out.rstrip('/')}/report.html"
        masker.generate_report().save_as_html(target, storage_options=args.storage_options)
        print(f"report: {target}")
    print(f"{result} in {time.perf_counter() - start:.1f} s")
    for name, error in result.failed.items():
        print(f"FAILED {name}: {error}", file=sys.stderr)
    return 1 if result.failed else 0


def _demo(args: argparse.Namespace) -> int:
    from daskmasker.demo import run_demo

    with _client(args) as client:
        run_demo(
            args.out,
            n_volumes=args.volumes,
            n_maps=args.maps,
            seed=args.seed,
            client=client,
            progress=not args.no_progress,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _get_parser().parse_args(argv)
    commands = {"convert": _convert, "extract": _extract, "demo": _demo}
    try:
        return commands[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, OSError) as exc:
        print(f"daskmasker {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
