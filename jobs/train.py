"""Entry point for `ray job submit -- python jobs/train.py --data URL --out RUN_URL [options]`.

The same command as `llmgan train` (distributed on Ray Train unless --local); it joins the cluster from
RAY_ADDRESS (set by `ray job submit`), else starts a local Ray.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, under `ray job submit --working-dir`

import typer

from llmgan.cli.train import train_command

if __name__ == "__main__":
    typer.run(train_command)
