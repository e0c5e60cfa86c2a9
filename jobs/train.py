"""Entry point for `ray job submit -- python jobs/train.py --data URL --out RUN_URL [options]`.

The same command as `llmgan train` (distributed on Ray Train unless --local); it joins the cluster from
RAY_ADDRESS (set by `ray job submit`), else starts a local Ray.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, under `ray job submit --working-dir`

import typer  # noqa: E402

from llmgan.cli.train import register  # noqa: E402

# Module level: cluster/submit.py checks a job's flags with this same app before submitting.
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)  # as `llmgan`
register(app)  # one command: the app runs it directly, with the same option parsing as `llmgan train`

if __name__ == "__main__":
    app()
