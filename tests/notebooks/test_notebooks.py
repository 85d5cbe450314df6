"""The notebooks of docs/notebooks, executed top to bottom (nbclient) against a server on loopback.

They run on the small survey of the viewer tests (tests/services/test_viewer.py: L2 exposures at three
epochs in two bands, their mosaics, a multi-band catalog with its HATS copy, forced photometry), at the
position of its variable star. Every notebook asserts what it shows, so a notebook that stops working
fails here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "docs" / "notebooks").glob("*.ipynb"))


def _viewer_module():
    name = "romanflow_tests_viewer_survey"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "services" / "test_viewer.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    viewer = _viewer_module()
    root = viewer.shared_survey(tmp_path_factory)
    with viewer.LoopbackServer(root) as running:
        ra, dec, _ = viewer.survey_stars()
        yield running.url, float(ra[0]), float(dec[0])


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean(path, server, monkeypatch, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    url, ra, dec = server
    monkeypatch.setenv("ROMANFLOW_SERVER", url)
    monkeypatch.setenv("ROMANFLOW_RA", repr(ra))
    monkeypatch.setenv("ROMANFLOW_DEC", repr(dec))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows the figures
    notebook = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code"), \
        f"{path.name}: committed with outputs; clear them"
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    figures = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
               if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert figures, f"{path.name}: no figure drawn"
