"""The commands: ``convert``, ``extract`` (one atlas or several), ``demo``, ``info``, ``clean``,
``connectivity``.
Each imports what it uses, so ``--help`` loads neither Dask nor xarray."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time

from daskmasker.cli.checks import _check_exists, _check_extract, _output
from daskmasker.cli.parser import _STANDARDIZE, _TARGETS, CommandError, _flag_names, logger
from daskmasker.report.output import beside, write_page


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


_SLURM_FLAGS = (
    "partition",
    "cores",
    "memory",
    "walltime",
    "jobqueue_config",
    "log_dir",
    "interface",
)


def client_from_args(args: argparse.Namespace, work: int | None = None):
    """The client the options of :func:`~daskmasker.cli.parser.add_cluster_options` ask for,
    as a context manager (None: the threaded scheduler).  ``work``: the command's independent
    pieces of work (runs), so SLURM is asked no more workers than that."""
    from daskmasker.runtime.cluster import cluster_client

    slurm = {name: getattr(args, name, None) for name in _SLURM_FLAGS}
    if args.workers is not None and (args.scheduler or args.scheduler_file):
        given = "--scheduler" if args.scheduler else "--scheduler-file"
        raise CommandError(f"--workers: not with {given} (its workers are already running)")
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


def _progress(args: argparse.Namespace, label: str, client):
    from daskmasker.runtime.progress import task_progress

    where = "the local threaded scheduler" if client is None else client.scheduler.address
    logger.debug("%s: running on %s", label, where)
    return task_progress(label, client, enabled=not (args.quiet or args.no_progress))


def _phase(args: argparse.Namespace, label: str, unit: str):
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
    """One atlas: three phases, each with its own progress display (``fit``, ``extract``,
    ``write reports``), so no counter restarts when the next phase's tasks arrive."""
    args.t_r, confounds = _check_extract(args)
    from daskmasker.batch.jobs import source
    from daskmasker.batch.run import run_batch

    if len(args.maps) > 1:
        return _extract_many(args)
    args.maps = args.maps[0]

    masker = _masker_from_args(args)
    logger.debug("masker: %r", masker)
    start = time.perf_counter()
    with _client(args, len(args.imgs)) as client:
        # on the first image, as run_batch would; counted in atlases, not in tasks: the fit
        # runs a few small computations one after the other (each would restart a counter)
        with _phase(args, "fit", unit="atlas") as line:
            masker.fit(source(args.imgs[0], args.storage_options))
            if line is not None:
                line.update(1, 1)
        with _progress(args, "extract", client):
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
    if not args.no_report:
        _write_reports(args, masker, result)
    logger.info("%s in %.1f s", result, time.perf_counter() - start)
    for name, error in result.failed.items():
        logger.error("FAILED %s: %s", name, _flag_names(error))
    return 1 if result.failed else 0


def _write_reports(args: argparse.Namespace, masker, result) -> None:
    """The masker's report (if a run was extracted) and the study report beside ``--out``,
    under one progress display (``write reports``); their paths are said after it."""
    total = 2 if result.done else 1
    said: list[tuple[int, str, str]] = []
    with _phase(args, "write reports", unit="reports") as line:
        if result.done:
            target = beside(args.out, ".masker.html")
            try:
                report = masker.generate_report(displayed_maps=min(10, masker.n_elements_))
                report.save_as_html(target, storage_options=args.storage_options)
                said.append((logging.INFO, "masker report: %s", target))
            except ImportError as exc:  # the plotting extra is not installed
                said.append((logging.WARNING, "no masker report: %s", str(exc)))
            if line is not None:
                line.update(1, total)
        failed = {name: _flag_names(error) for name, error in result.failed.items()}
        target = _study_report(args.out, args.storage_options, failed)
        said.append((logging.INFO, "study report: %s", target))
        if line is not None:
            line.update(total, total)
    for level, message, value in said:
        logger.log(level, message, value)


def _extract_many(args: argparse.Namespace) -> int:
    """``extract`` with several ``--maps``: a batch store per atlas (``OUT/<atlas>.zarr``, named
    after the maps file), every image read once for all the atlases that still need it.  Each
    store keeps what ``run_batch``'s does (fingerprints, raw signals, audit metadata): a rerun
    skips unchanged runs and refuses changed ones, per atlas."""
    from pathlib import PurePosixPath

    import dask

    from daskmasker.batch.jobs import source
    from daskmasker.batch.record import Recorder, index_entry
    from daskmasker.batch.run import finish, make_items
    from daskmasker.batch.store import completed, open_output, write_run
    from daskmasker.masker.many import fit_many
    from daskmasker.runtime.client import active_client, tune_local_allocator

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
    failed = n_done = 0
    with _client(args, len(items)):
        if active_client() is None:  # the images computed by this process's threads
            tune_local_allocator()
        maskers = fit_many(atlases, source(items[0].image, so), **params)
        outputs = []
        for name, masker in zip(names, maskers, strict=True):
            store = f"{args.out.rstrip('/')}/{name}.zarr"
            spec = masker.extraction_spec()
            location = open_output(store, spec.attrs, args.overwrite, so)
            recorder = Recorder(spec, so).prepare()
            done = completed(location)
            todo, _ = recorder.split(location, items, done)
            index = {**done, **recorder.refreshed}
            outputs.append((masker, recorder, location, index, {i.name for i in todo}))
        try:
            for item in items:
                wanted = [out for out in outputs if item.name in out[4]]
                if not wanted:
                    continue
                try:
                    lazies = [
                        rec.spec.lazy(
                            source(item.image, so),
                            item.confounds,
                            item.sample_mask,
                            brain_mask=source(item.brain_mask, so),
                        )
                        for _, rec, *_ in wanted
                    ]
                    # one computation: the atlases' linked maps share the image's reads
                    values = dask.compute(*[(sig.data, raw, conf) for sig, conf, raw in lazies])
                except Exception as exc:  # recorded; the batch goes on
                    logger.error("FAILED %s: %s: %s", item.name, type(exc).__name__, exc)
                    failed += 1
                    continue
                for (_, recorder, location, index, _), lazy, (sig, raw, conf) in zip(
                    wanted, lazies, values, strict=True
                ):
                    ds = recorder.dataset(item, lazy[0], sig, raw, conf)
                    write_run(location, item.name, ds)
                    index[item.name] = index_entry(ds)
                n_done += 1
        finally:
            for _, _, location, index, _ in outputs:
                finish(location, index)
    logger.info(
        "%d images x %d atlases into %s/{%s}.zarr: %d extracted, %d already complete, "
        "%d failed in %.1f s",
        len(items),
        len(atlases),
        args.out,
        ",".join(names),
        n_done,
        len(items) - n_done - failed,
        failed,
        time.perf_counter() - start,
    )
    return 1 if failed else 0


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
    from daskmasker.batch.read import store_info

    print(store_info(args.store, storage_options=args.storage_options))
    if args.report:
        print(f"study report: {_study_report(args.store, args.storage_options)}")
    return 0


def _study_report(store: str, storage_options, failed: dict | None = None) -> str:
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
