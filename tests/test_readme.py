"""The README's Python code blocks run as written (in a fresh interpreter, in a temporary folder)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    """The ```python fenced blocks of the README, in order."""
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_python_blocks_run(tmp_path):
    blocks = python_blocks()
    assert blocks, "the README has no Python example"
    for k, block in enumerate(blocks):
        script = tmp_path / f"block{k}.py"
        script.write_text(block)
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                              env=dict(os.environ), timeout=600)
        assert done.returncode == 0, f"README Python block {k} failed:\n{block}\n{done.stderr[-3000:]}"
    # the quick start's products: one L2 file per simulated detector, with a finite rate image
    import asdf

    products = sorted((tmp_path / "cal").glob("*_cal.asdf"))
    assert len(products) == 2
    with asdf.open(products[0]) as af:
        data = np.asarray(af["roman"]["data"])
        assert data.shape == (504, 504)
        assert np.isfinite(data).mean() > 0.99
