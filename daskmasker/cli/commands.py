"""The commands: ``convert``, ``extract`` (one atlas or several), ``demo``, ``info``, ``clean``,
``connectivity``.
Each imports what it uses, so ``--help`` loads neither Dask nor xarray."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from daskmasker.cli.checks import _check_exists, _check_extract, _output
from daskmasker.cli.parser import _STANDARDIZE, _TARGETS, CommandError, _flag_names, logger
from daskmasker.report.output import beside, write_page

if TYPE_CHECKING:
    from distributed import Client

    from daskmasker.batch.run import BatchResult
    from daskmasker.masker.estimator import NiftiMapsMasker
    from daskmasker.runtime.progress import ProgressLine


def _masker_from_args(args: argparse.Namespace, maps: str) -> NiftiMapsMasker:
    from daskmasker.masker.estimator import NiftiMapsMasker

    return NiftiMapsMasker(
        maps_img=maps,
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


_SLURM_FLAGS = (
    "partition",
    "cores",
    "memory",
    "walltime",
    "jobqueue_config",
    "log_dir",
    "interface",
)


def client_from_args(
    args: argparse.Namespace, work: int | None = None
) -> AbstractContextManager[Client | None]:
    """The client the options of :func:`~daskmasker.cli.parser.add_cluster_options` ask for,
    as a context manager (None: the threaded scheduler).  ``work``: the command's independent
    pieces of work (runs), so SLURM is asked no more workers than that."""
    from daskmasker.runtime.cluster import cluster_client

    slurm = {name: getattr(args, name, None) for name in _SLURM_FLAGS}
    if args.workers is not None and (args.scheduler or args.scheduler_file):
        flag = "--scheduler" if args.scheduler else "--scheduler-file"
        raise CommandError(f"--workers: not with {flag} (its workers are already running)")
    if args.cluster != "slurm":
        given = [f"--{n.replace('_', '-')}" for n, v in slurm.items() if v is not None]
        if given:
            raise CommandError(f"{', '.join(given)}: SLURM job options, for --cluster slurm")
    elif args.workers is not None and work is not None:
        work = min(work, args.workers)
    if args.cluster == "slurm" and slurm["log_dir"] is None:
        out = getattr(args, "out", None)
        if out and "://" not in out:
            slurm["log_dir"] = os.path.join(
                os.path.dirname(os.path.abspath(out)), "daskmasker-slurm-logs"
            )
    return cluster_client(
        args.cluster,
        scheduler=args.scheduler,
        scheduler_file=args.scheduler_file,
        workers=args.workers,
        work=work,
        say=logger.info,
        **slurm,
    )


_client = client_from_args


def _progress(
    args: argparse.Namespace, label: str, client: Client | None
) -> AbstractContextManager[ProgressLine | None]:
    from daskmasker.runtime.progress import task_progress

    where: str | None = "the local threaded scheduler"
    if client is not None and client.scheduler is not None:  # None only before it connects
        where = client.scheduler.address
    logger.debug("%s: running on %s", label, where)
    return task_progress(label, client, enabled=not (args.quiet or args.no_progress))


def _phase(
    args: argparse.Namespace, label: str, unit: str
) -> contextlib.AbstractContextManager[ProgressLine | None]:
    """A named phase that is not one Dask computation (see
    :func:`~daskmasker.runtime.progress.phase`), silent with ``-q`` or ``--no-progress``."""
    from daskmasker.runtime.progress import phase

    return phase(label, enabled=not (args.quiet or args.no_progress), unit=unit)


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
            maps=args.maps,
        )
    logger.info("converted %s -> %s in %.1f s", args.source, out, time.perf_counter() - start)
    return 0


def _extract(args: argparse.Namespace) -> int:
    """Each atlas (one per ``--maps``) into its store, in three phases, each with its own
    progress display (``fit``, ``extract``, ``write reports``), so that no counter restarts when
    the next phase's tasks arrive."""
    labels = args.atlas_label
    if labels is not None and len(labels) != len(args.maps):
        raise CommandError(
            f"{len(labels)} --atlas-label for {len(args.maps)} --maps: give one per --maps"
        )
    args.t_r, confounds = _check_extract(args)
    from daskmasker.batch.jobs import source
    from daskmasker.batch.run import run_batch
    from daskmasker.masker.many import fit_together

    stores = _atlas_stores(args.out, args.maps)
    maskers = [_masker_from_args(args, maps) for maps in args.maps]
    for masker in maskers:
        logger.debug("masker: %r", masker)
    start = time.perf_counter()
    with _client(args, len(args.imgs)) as client:
        # on the first image, as run_batch would; counted in atlases, not in tasks: the fit
        # runs a few small computations one after the other (each would restart a counter)
        with _phase(args, "fit", unit="atlases") as line:
            fit_together(maskers, source(args.imgs[0], args.storage_options))
            if line is not None:
                line.update(len(maskers), len(maskers))
        with _progress(args, "extract", client):
            results = run_batch(
                maskers,
                args.imgs,
                stores,
                confounds=confounds,
                overwrite=args.overwrite,
                storage_options=args.storage_options,
                tsv_dir=args.tsv_dir,
                atlas_label=labels,
                client=client,
            )
    failed = {}
    for masker, result in zip(maskers, results, strict=True):
        if not args.no_report:
            _write_reports(args, masker, result)
        logger.info("%s in %.1f s", result, time.perf_counter() - start)
        failed.update({name: _flag_names(error) for name, error in result.failed.items()})
    for name, error in failed.items():  # an image fails for all the atlases at once
        logger.error("FAILED %s: %s", name, error)
    return 1 if failed else 0


def _atlas_stores(out: str, maps: list[str]) -> list[str]:
    """The store of each atlas: ``--out`` for one; ``OUT/<atlas>.zarr`` for several, named
    after the maps file (``atlas-<i>_<name>`` when two files have the same name)."""
    if len(maps) == 1:
        return [out]
    from pathlib import PurePosixPath

    names = [re.sub(r"\.nii(\.gz)?$|\.zarr/?$", "", PurePosixPath(m).name) for m in maps]
    if len(set(names)) < len(names):
        names = [f"atlas-{i}_{n}" for i, n in enumerate(names)]
    return [f"{out.rstrip('/')}/{name}.zarr" for name in names]


def _write_reports(args: argparse.Namespace, masker: NiftiMapsMasker, result: BatchResult) -> None:
    """An atlas's two reports, beside its store, under one progress display (``write
    reports``): the masker's (nilearn's ``generate_report``, ``STORE.masker.html``) once a run is
    extracted, and the study report (``STORE.report.html``); their paths are said after it."""
    total = 2 if result.done else 1
    said: list[tuple[int, str, str]] = []
    with _phase(args, "write reports", unit="reports") as line:
        if result.done:
            target = beside(result.store, ".masker.html")
            try:
                report = masker.generate_report(displayed_maps=min(10, masker.n_elements_))
                report.save_as_html(target, storage_options=args.storage_options)
                said.append((logging.INFO, "masker report: %s", target))
            except ImportError as exc:  # the plotting extra is not installed
                said.append((logging.WARNING, "no masker report: %s", str(exc)))
            if line is not None:
                line.update(1, total)
        failed = {name: _flag_names(error) for name, error in result.failed.items()}
        target = _study_report(result.store, args.storage_options, failed)
        said.append((logging.INFO, "study report: %s", target))
        if line is not None:
            line.update(total, total)
    for level, message, value in said:
        logger.log(level, message, value)


def _demo(args: argparse.Namespace) -> int:
    from daskmasker.demo import intro, run_demo

    if not args.quiet:  # said before Dask, xarray and nibabel are imported
        print(intro(args.out, args.volumes, args.maps), flush=True)
    with _client(args) as client:
        run_demo(
            args.out,
            n_volumes=args.volumes,
            n_maps=args.maps,
            seed=args.seed,
            client=client,
            progress=not (args.quiet or args.no_progress),
            verbose=not args.quiet,
            announce=False,
        )
    return 0


def _info(args: argparse.Namespace) -> int:
    from daskmasker.batch.info import store_info

    print(store_info(args.store, storage_options=args.storage_options))
    if args.report:
        print(f"study report: {_study_report(args.store, args.storage_options)}")
    return 0


def _study_report(store: str, storage_options: dict | None, failed: dict | None = None) -> str:
    """Write the study report beside ``store`` (see :mod:`daskmasker.report.study`); its path.

    The store is read through its public reader (``open_timeseries``); ``failed`` (run ->
    message) adds the runs this command could not extract.
    """
    import pandas as pd

    from daskmasker.batch.read import open_timeseries
    from daskmasker.report.study import study_report

    ds = open_timeseries(store, storage_options=storage_options)
    complete = "run" in ds.dims and ds.sizes["run"] > 0
    rows: dict[str, dict] = {}
    if complete:
        names = [str(n) for n in ds["run"].values]
        for name, volumes, source in zip(
            names, ds["n_volumes"].values, ds["source"].values, strict=True
        ):
            rows[name] = {
                "run": name,
                "status": "complete",
                "volumes": int(volumes),
                "source": str(source),
            }
    for name, message in (failed or {}).items():
        rows.setdefault(name, {"run": name}).update(status="failed", message=message)
    page = study_report(
        ds if complete else None,
        pd.DataFrame(list(rows.values()), columns=None if rows else ["run", "status"]),
        title=str(store),
    )
    target = beside(store, ".report.html")
    write_page(page, target, storage_options)
    return target


def _upgrade(args: argparse.Namespace) -> int:
    from daskmasker.batch.upgrade import upgrade

    start = time.perf_counter()
    n = upgrade(args.store, args.out, storage_options=args.storage_options)
    print(f"{args.store} -> {args.out}: {n} runs in {time.perf_counter() - start:.1f} s")
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


def _connectivity(args: argparse.Namespace) -> int:
    _check_exists("store", [args.store])
    from daskmasker.batch.connectome import write_relmats

    start = time.perf_counter()
    with _client(args) as client, _progress(args, "connectivity", client):
        written = write_relmats(args.store, args.out, args.kind, args.storage_options)
    relmats = sum(path.endswith("_relmat.tsv") for path in written)
    logger.info(
        "%d relmat.tsv files (%s) in %s in %.1f s",
        relmats,
        ", ".join(args.kind),
        args.out,
        time.perf_counter() - start,
    )
    return 0
