"""The layer rule (DESIGN.md): only llmgan.distributed imports ray, only llmgan.cli imports typer;
no work at import time; `llmgan --help` loads neither torch nor ray."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmgan"
ALLOWED = {"ray": "distributed", "typer": "cli"}


def imported_roots(path: Path) -> set[str]:
    """Top-level module names imported anywhere in a file (function bodies included)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_layer_rule() -> None:
    violations = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 5
    for path in files:
        subpackage = path.relative_to(PACKAGE).parts[0]
        for module, home in ALLOWED.items():
            if module in imported_roots(path) and subpackage != home:
                violations.append(f"{path.relative_to(PACKAGE.parent)} imports {module} (only llmgan/{home} may)")
    assert violations == []


def test_import_everything_does_no_work(tmp_path: Path) -> None:
    """Importing every module creates no files and starts no Ray."""
    modules = [
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted(PACKAGE.rglob("*.py"))
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "ray = sys.modules.get('ray')\n"
        "assert ray is None or not ray.is_initialized(), 'ray.init at import time'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    assert list(tmp_path.iterdir()) == []


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from llmgan.cli.app import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('torch', 'ray', 'transformers', 'pyarrow', 'boto3') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "", f"--help imported {out}"
