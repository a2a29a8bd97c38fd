"""``python -m autolrs``: the same command as ``autolrs``."""

import sys

from autolrs.cli import main

if __name__ == "__main__":
    sys.exit(main())
