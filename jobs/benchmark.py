"""Entry point for `ray job submit -- python jobs/benchmark.py [--quick] [--out DIR] [--only NAME]` (same as `python -m benchmarks`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, under `ray job submit --working-dir`

from benchmarks.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
