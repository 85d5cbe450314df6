"""The import-graph check: the package is clean, and the check finds what it is meant to find."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import check_layers  # noqa: E402


def _package(tmp_path, files: dict) -> Path:
    src = tmp_path / "src"
    for name, text in files.items():
        path = src / "romanflow" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for folder in [p for p in (src / "romanflow").rglob("*") if p.is_dir()] + [src / "romanflow"]:
        (folder / "__init__.py").touch()
    return src


def test_package_has_no_cycle_and_no_upward_import():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "check_layers.py")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_upward_import_inside_a_function_is_found(tmp_path):
    src = _package(tmp_path, {
        "calibrate/steps.py": "def f():\n    from romanflow.astrometry.match import g\n",
        "astrometry/match.py": "def g():\n    pass\n",
    })
    problems = check_layers.check(src)
    assert len(problems) == 1
    assert "romanflow.calibrate.steps (calibrate) imports romanflow.astrometry.match (astrometry)" in problems[0]
    assert problems[0].startswith("romanflow/calibrate/steps.py:2:")


def test_cycle_within_one_level_is_found(tmp_path):
    src = _package(tmp_path, {
        "catalog/a.py": "from romanflow.catalog import b\n",
        "catalog/b.py": "from . import c\n",
        "catalog/c.py": "def h():\n    import romanflow.catalog.a\n",
        "catalog/d.py": "from romanflow.catalog.a import x\n",
    })
    problems = check_layers.check(src)
    assert problems == ["import cycle: romanflow.catalog.a <-> romanflow.catalog.b <-> romanflow.catalog.c"]


def test_downward_imports_and_root_imports_are_allowed(tmp_path):
    src = _package(tmp_path, {
        "kernels/ramp.py": "from romanflow import dq\n",
        "dq.py": "X = 1\n",
        "run/tasks.py": "from romanflow.catalog.a import x\nfrom ..mosaic import m\n",
        "catalog/a.py": "x = 1\n",
        "mosaic/m.py": "",
        "cli/main.py": "import romanflow.run.tasks\n",
    })
    assert check_layers.check(src) == []


def test_kernel_importing_the_root_package_is_an_upward_import(tmp_path):
    src = _package(tmp_path, {"kernels/ramp.py": "from romanflow import __version__\n"})
    (problem,) = check_layers.check(src)
    assert "imports romanflow (top)" in problem


def test_module_outside_every_level_is_reported(tmp_path):
    src = _package(tmp_path, {"gadgets/thing.py": ""})
    problems = check_layers.check(src)
    assert any("romanflow.gadgets" in p and "not assigned to a level" in p for p in problems)


def test_level_order_is_the_documented_one():
    names = [name for name, _ in check_layers.LEVELS]
    documented = ["kernels", "psf", "simulate", "calibrate", "astrometry", "mosaic", "catalog", "inject", "run",
                  "archive", "services"]
    assert [n for n in names if n in documented] == documented
    with pytest.raises(LookupError, match="not assigned"):
        check_layers.level_of("romanflow.nowhere")
