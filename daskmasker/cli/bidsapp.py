"""The ``bids`` command: a BIDS App over fMRIPrep derivatives (see
:mod:`daskmasker.batch.bidsapp`)."""

from __future__ import annotations

import argparse
import time

from daskmasker.cli.parser import _STANDARDIZE, CommandError, _flag_names, logger


def _bids(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ImportError as exc:  # nilearn, the [fmriprep] extra: the message names the pip command
        raise CommandError(str(exc)) from exc


def _run(args: argparse.Namespace) -> int:
    from daskmasker.batch import bidsapp
    from daskmasker.batch.denoise import PARAMETERS
    from daskmasker.batch.fmriprep import read_filter
    from daskmasker.cli.commands import _client

    start = time.perf_counter()
    if args.analysis_level == "group":
        _, failed = bidsapp.group(args.output_dir, args.connectivity_kind or ["correlation"])
        logger.info("group level of %s in %.1f s", args.output_dir, time.perf_counter() - start)
        return 1 if failed else 0
    if not args.maps:
        raise CommandError("the participant level needs --maps (one per atlas)")
    selection = {
        "participant_label": args.participant_label,
        "session_label": args.session_label,
        "task": args.task,
        "space": args.space,
        "res": args.res,
        "bids_filter": read_filter(args.bids_filter_file),
    }
    masker = {
        "mask_img": args.mask,
        "standardize": _STANDARDIZE[args.standardize],
        "detrend": args.detrend,
        "low_pass": args.low_pass,
        "high_pass": args.high_pass,
        "smoothing_fwhm": args.smoothing_fwhm,
        "dtype": args.dtype,
        "min_coverage": args.min_coverage,
    }
    runs = bidsapp.select_runs(args.fmriprep_dir, args.denoise_strategy, **selection)
    with _client(args, len(runs)) as client:  # SLURM: no more workers than runs
        result = bidsapp.participant(
            args.fmriprep_dir,
            args.output_dir,
            args.maps,
            atlas_labels=args.atlas_label,
            strategy=args.denoise_strategy,
            # every strategy parameter but ica_aroma, which --denoise-strategy chooses
            denoise_params={k: getattr(args, k) for k in PARAMETERS if k != "ica_aroma"},
            masker_params=masker,
            runs=runs,
            overwrite=args.overwrite,
            client=client,
        )
    failed = dict(result.failed)
    for label, batch in result.results.items():
        logger.info("atlas %s: %s", label, batch)
        failed.update({f"{name} (atlas {label})": e for name, e in batch.failed.items()})
    logger.info("participant level in %.1f s", time.perf_counter() - start)
    for name, error in failed.items():
        logger.error("FAILED %s: %s", name, _flag_names(error))
    return 1 if failed else 0
