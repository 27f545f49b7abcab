"""What ``extract`` checks before any voxel is read: values, input files, the output path,
confounds files and the images' headers (their TR)."""

from __future__ import annotations

import argparse
import glob
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from daskmasker.cli.parser import _ENTITIES, CommandError, logger

if TYPE_CHECKING:
    import pandas as pd

    from daskmasker.io.fs import Location


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


def _output(path: str, storage_options: dict | None) -> Location | None:
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


def _header_t_r(found: dict[str, float | None]) -> tuple[float | None, str]:
    """The images' common TR from their headers (path -> TR), and where it comes from."""
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


def _read_confounds(path: str, columns: str | None, n_scans: int) -> str | pd.DataFrame:
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
    from daskmasker.io.load import image_header

    headers = {path: image_header(path, args.storage_options) for path in args.imgs}
    t_r = args.t_r
    if t_r is None:
        t_r, source = _header_t_r({path: found[0] for path, found in headers.items()})
        _check_filters(args, t_r, source)
        if t_r is not None:
            logger.info("using TR=%g s %s (pass --t-r to override)", t_r, source)
    confounds = None
    if files is not None:
        confounds = [
            _read_confounds(path, args.confounds_columns, headers[img][1])
            for img, path in zip(args.imgs, files, strict=True)
        ]
    return t_r, confounds
