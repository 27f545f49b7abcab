"""The ``daskmasker`` command: ``convert``, ``extract``, ``demo``, ``info``, ``clean``,
``connectivity`` and ``bids`` (a BIDS App over fMRIPrep derivatives).

``main(argv=None)`` returns the exit code (nibabel's pattern), so tests call it directly.
Only the standard library is imported here: ``--help`` and ``--version`` load neither Dask nor
xarray; each command imports what it uses.  A command checks its parameters (values, input files,
the output path, then the images' headers) before any voxel is read, and reports a wrong one as
argparse does, ``daskmasker extract: error: ...`` with exit code 2, naming the flag.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from daskmasker.cli.bidsapp import _bids
from daskmasker.cli.commands import (
    _clean,
    _connectivity,
    _convert,
    _demo,
    _extract,
    _info,
    _upgrade,
)
from daskmasker.cli.parser import CommandError, _flag_names, _get_parser, logger

__all__ = ["_get_parser", "main"]


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
        "connectivity": _connectivity,
        "bids": _bids,
        "upgrade": _upgrade,
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
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP while SLURM jobs run
        how = f" ({exc})" if str(exc) else ""
        print(f"daskmasker {args.command}: interrupted{how}", file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
