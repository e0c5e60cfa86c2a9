"""`python -m benchmarks [--quick] [--out DIR] [--only NAME]`: every benchmark, one ratio table."""

import sys

from benchmarks.report import main

if __name__ == "__main__":
    sys.exit(main())
