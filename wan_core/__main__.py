"""``python -m wan_core``: see :mod:`wan_core.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
