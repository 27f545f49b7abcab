"""``python -m daskmasker.cli``: the ``daskmasker`` command."""

import sys

from daskmasker.cli import main

if __name__ == "__main__":  # pragma: no cover - run as a program
    sys.exit(main())
