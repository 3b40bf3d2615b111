"""`python -m compute ...`: an alias of the `tds` command (compute.cli)."""

import sys

from compute.cli import main

if __name__ == "__main__":
    sys.exit(main())
