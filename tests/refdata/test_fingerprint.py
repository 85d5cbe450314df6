"""The store fingerprint follows the values written into reference files, never source text."""

import dataclasses
import inspect
import subprocess
import sys

import numpy as np
import pytest

from romanflow import detector, detector_model, dq
from romanflow.detector import MATable
from romanflow.geometry import distortion
from romanflow.refdata import fingerprint, synthesize
from romanflow.refdata.store import parameter_fingerprint


@pytest.fixture
def fresh(monkeypatch):
    """Recompute the fingerprint in the test (it is cached per process); leave no patched value cached."""
    parameter_fingerprint.cache_clear()
    baseline = parameter_fingerprint()
    parameter_fingerprint.cache_clear()
    yield baseline
    parameter_fingerprint.cache_clear()


def _changed(baseline) -> bool:
    parameter_fingerprint.cache_clear()
    return parameter_fingerprint() != baseline


def test_stable_across_calls_and_processes(fresh):
    assert parameter_fingerprint() == fresh
    parameter_fingerprint.cache_clear()
    assert parameter_fingerprint() == fresh
    out = subprocess.run([sys.executable, "-c", "from romanflow.refdata.store import parameter_fingerprint as f; "
                          "print(f())"], capture_output=True, text=True, check=True).stdout.strip()
    assert out == fresh


def test_source_text_and_docstrings_do_not_count(fresh, monkeypatch):
    def no_source(*args, **kwargs):
        raise AssertionError("the fingerprint must not read source text")

    monkeypatch.setattr(inspect, "getsource", no_source)
    for module in (detector, detector_model, dq, distortion, synthesize, fingerprint):
        monkeypatch.setattr(module, "__doc__", "edited docstring")
    monkeypatch.setattr(detector_model.DetectorModel, "__doc__", "edited docstring")
    assert not _changed(fresh)


def test_a_dq_value_changes_it(fresh, monkeypatch):
    monkeypatch.setattr(dq, "HOT", 1 << 14)
    assert _changed(fresh)


def test_an_ma_table_changes_it(fresh, monkeypatch):
    table = detector.MA_TABLES[4]
    pattern = table.read_pattern[:-1] + ((table.last_read + 1,),)
    monkeypatch.setitem(detector.MA_TABLES, 4, MATable(4, table.name, pattern))
    assert _changed(fresh)


def test_a_detector_constant_changes_it(fresh, monkeypatch):
    monkeypatch.setattr(detector, "FRAME_TIME", detector.FRAME_TIME * 1.001)
    assert _changed(fresh)


def test_a_distortion_coefficient_changes_it(fresh, monkeypatch):
    table = dict(distortion.distortion_table())
    d = table["WFI07"]
    fx = d.fx.copy()
    fx[1, 1] += 1e-12  # arcsec: far below anything measurable, still a different file
    table["WFI07"] = dataclasses.replace(d, fx=fx)
    monkeypatch.setattr(distortion, "distortion_table", lambda: table)
    assert _changed(fresh)


def test_a_model_parameter_changes_it(fresh, monkeypatch):
    read_noise = detector_model.DetectorModel.read_noise.func
    monkeypatch.setattr(detector_model.DetectorModel, "read_noise",
                        property(lambda self: (read_noise(self) * np.float32(1.01)).astype(np.float32)))
    assert _changed(fresh)


def test_the_model_seed_changes_it(fresh, monkeypatch):
    monkeypatch.setattr(detector_model, "DEFAULT_MODEL_SEED", detector_model.DEFAULT_MODEL_SEED + 1)
    assert _changed(fresh)


def test_file_version_and_package_versions_change_it(fresh, monkeypatch):
    monkeypatch.setattr(synthesize, "FILE_VERSION", "9999")
    assert _changed(fresh)
    monkeypatch.undo()
    assert not _changed(fresh)
    real = fingerprint._package_version
    monkeypatch.setattr(fingerprint, "_package_version", lambda name: "9.9" if name == "galsim" else real(name))
    assert _changed(fresh)


def test_inputs_name_what_they_cover():
    inputs = fingerprint.synthesis_inputs()
    assert set(inputs) >= {"file_version", "dq", "ma_tables", "models", "distortion", "packages", "detector"}
    assert set(inputs["packages"]) == {"galsim", "roman_datamodels", "rad"}
    assert inputs["dq"]["HOT"] == dq.HOT and set(inputs["ma_tables"]) == set(detector.MA_TABLES)
