"""The layer rules (docs/architecture.md, "Layers"): llmgan's subpackages import only their own layer or lower ones
(io -> data -> text -> domains -> gan -> eval -> job -> distributed -> cli), only llmgan.distributed imports ray, only
llmgan.cli imports typer, llmgan never imports the benchmarks / jobs / tests on top of it; no work at import
time; `llmgan --help` loads neither torch nor ray."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "llmgan"
LAYERS = ("io", "data", "text", "domains", "gan", "eval", "job", "distributed", "cli")
RANK = {name: i for i, name in enumerate(LAYERS)}
# base modules anyone may import; `python -m llmgan` (__main__) only starts the CLI, so it sits with it
BASE = {"llmgan", "llmgan.errors"}
HOME_OF_MODULE = {"__main__": "cli"}
ONLY_IN = {"ray": "distributed", "typer": "cli"}  # third-party modules only one layer may import
ABOVE_THE_PACKAGE = {"benchmarks", "jobs", "tests", "cluster"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import anywhere in the file, function bodies and TYPE_CHECKING
    blocks included; `from pkg import name` yields pkg.name (a submodule or an attribute: both depend on pkg)."""
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base


def layer_of(module: str) -> str | None:
    """The llmgan layer an absolute module name belongs to; None for base modules (llmgan, llmgan.errors, names
    from llmgan/__init__) and anything outside llmgan."""
    parts = module.split(".")
    if parts[0] != "llmgan" or len(parts) == 1:
        return None
    return parts[1] if parts[1] in RANK else HOME_OF_MODULE.get(parts[1])


def layer_violations() -> list[str]:
    """Every import that breaks a rule, as `file:line imports module (why)`."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel, name = path.relative_to(ROOT), _module_name(path)
        if rel.parts[1] == "assets":
            found.append(f"{rel}: code under llmgan/assets (it holds model files only)")
            continue
        own = layer_of(name)
        rank = RANK[own] if own else -1  # base modules sit below every layer
        if own is None and name not in BASE:
            found.append(f"{rel}: not in any layer ({', '.join(LAYERS)}); add it to LAYERS or move it")
            continue
        for line, module in imports(path):
            where = f"{rel}:{line} imports {module}"
            root = module.split(".")[0]
            if root in ONLY_IN and own != ONLY_IN[root]:
                found.append(f"{where} (only llmgan/{ONLY_IN[root]} may import {root})")
            elif root in ABOVE_THE_PACKAGE:
                found.append(f"{where} ({root}/ sits on top of the package; llmgan never imports it)")
            target = layer_of(module)
            if target is not None and RANK[target] > rank:
                found.append(f"{where} ({own or name + ' is a base module and'} is below {target}: "
                             f"{' -> '.join(LAYERS)})")
    return found


def test_layer_order() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30 and {p.relative_to(PACKAGE).parts[0] for p in files} >= set(LAYERS)
    violations = layer_violations()
    for v in violations:
        print(v)
    assert violations == [], "layer rule broken:\n" + "\n".join(violations)


def test_the_checker_catches_each_kind_of_violation(tmp_path: Path, monkeypatch) -> None:
    """A checker that cannot fail is no check: a fake package with one violation of each kind."""
    fake = tmp_path / "llmgan"
    for sub in LAYERS:
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text("")
    (fake / "assets").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "errors.py").write_text("")
    (fake / "io" / "ok.py").write_text("from llmgan.errors import UserError\nimport numpy\n")
    (fake / "data" / "up.py").write_text("def f():\n    from llmgan.gan import networks\n")
    (fake / "gan" / "rel.py").write_text("from ..eval import classifier\nfrom . import losses\n")
    (fake / "eval" / "ray_user.py").write_text("import ray.data\n")
    (fake / "job" / "typer_user.py").write_text("from typer import Option\n")
    (fake / "cli" / "bench.py").write_text("from benchmarks import report\nfrom llmgan.job import run\n")
    (fake / "distributed" / "ok.py").write_text("import ray\nfrom llmgan.job.run import drive\n")
    (fake / "assets" / "tool.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    found = layer_violations()
    expected = [
        ("llmgan/assets", "code under llmgan/assets"),
        ("llmgan/cli/bench.py:1 imports benchmarks.report", "on top of the package"),
        ("llmgan/data/up.py:2 imports llmgan.gan.networks", "data is below gan"),
        ("llmgan/eval/ray_user.py:1 imports ray.data", "only llmgan/distributed"),
        ("llmgan/gan/rel.py:1 imports llmgan.eval.classifier", "gan is below eval"),
        ("llmgan/job/typer_user.py:1 imports typer.Option", "only llmgan/cli"),
    ]
    assert len(found) == len(expected), "\n".join(found)
    for (prefix, why), line in zip(expected, sorted(found)):
        assert line.startswith(prefix) and why in line, line


def test_import_everything_does_no_work(tmp_path: Path) -> None:
    """Importing every module creates no files and starts no Ray."""
    modules = [_module_name(p) for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__main__.py"]
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
        "for args in (['--help'], ['data', 'shapes', '--help'], ['eval', '--help'], ['sample', '--help']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('torch', 'ray', 'transformers', 'pyarrow', 'boto3', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "", f"--help imported {out}"


def test_gpu_benchmark_runs_without_ray(tmp_path: Path) -> None:
    """`python -m benchmarks.gpu` is run on GPU machines without Ray: its import graph must not reach ray."""
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # any `import ray` now raises ImportError\n"
        "import benchmarks.gpu\n"
        "print(sorted(m for m in sys.modules if m.startswith('llmgan.distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout


# The domain seam: what is specific to a kind of image lives in llmgan/domains; everything else asks a Domain.
DOMAIN_HOME = PACKAGE / "domains"
DOMAIN_MODULES = ("llmgan.domains.shapes", "llmgan.domains.digits", "llmgan.domains.generic")
DOMAIN_NAMES = {"shapes", "digits", "captioned"}


def domain_seam_violations(package: Path = PACKAGE, home: Path = DOMAIN_HOME) -> list[str]:
    """Modules outside the domains package that import a domain's own modules or compare a value with a domain
    name (deciding by name what the domain should answer)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.is_relative_to(home):
            continue
        rel = path.relative_to(package.parent)
        for line, module in imports(path):
            if module.startswith(DOMAIN_MODULES):
                found.append(f"{rel}:{line} imports {module} (ask llmgan.domains.get_domain / domain_of instead)")
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    names = [side] if isinstance(side, ast.Constant) else \
                        list(side.elts) if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else []
                    if any(isinstance(c, ast.Constant) and c.value in DOMAIN_NAMES for c in names):
                        found.append(f"{rel}:{node.lineno} compares with a domain name")
    return found


def test_domain_seam() -> None:
    violations = domain_seam_violations()
    assert violations == [], "domain seam broken:\n" + "\n".join(violations)


def test_the_domain_seam_check_catches_imports_and_name_tests(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    fake = tmp_path / "llmgan"
    (fake / "domains" / "shapes").mkdir(parents=True)
    (fake / "job").mkdir()
    (fake / "domains" / "shapes" / "vocab.py").write_text("from llmgan.domains.shapes import render\n")
    (fake / "job" / "a.py").write_text("from llmgan.domains.shapes.vocab import SHAPES\n")
    (fake / "job" / "b.py").write_text("def f(d):\n    return d.name == 'shapes' or d in ('digits', 'x')\n")
    (fake / "job" / "c.py").write_text("from llmgan.domains import get_domain\nx = get_domain('shapes')\n")
    found = domain_seam_violations(fake, fake / "domains")
    assert len(found) == 3, found
    assert found[0].startswith("llmgan/job/a.py:1 imports llmgan.domains.shapes.vocab")
    assert all("compares with a domain name" in f for f in found[1:])
