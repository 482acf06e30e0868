"""`python -m paxtor ...`: the command line (see `paxtor.cli`)."""

import sys

from paxtor.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
