"""calibrate(): the request is checked, for every input, before any work."""

from __future__ import annotations

import numpy as np
import pytest

from romanflow.calibrate import CalibrationOptions, calibrate
from romanflow.calibrate import pipeline
from romanflow.detector import ma_table
from romanflow.errors import InputFileError, OutputExistsError, ParameterError
from romanflow.exposure import RampExposure
from romanflow.formats import write_l1


def _l1(path):
    rng = np.random.default_rng(0)
    meta = {"instrument": {"name": "WFI", "detector": "WFI07", "optical_element": "F158"},
            "exposure": {"type": "WFI_IMAGE", "read_pattern": ma_table(4).as_list(), "frame_time": 3.16247,
                         "ma_table_number": 4, "nresultants": 9}}
    exposure = RampExposure(data=rng.integers(0, 9000, (9, 256, 256), dtype=np.uint16),
                            amp33=rng.integers(0, 9000, (9, 256, 128), dtype=np.uint16), meta=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_l1(exposure, path)


@pytest.fixture()
def no_work(monkeypatch):
    """Fail the test if any calibration starts."""
    def refuse(*args, **kwargs):
        raise AssertionError("calibration started")

    monkeypatch.setattr(pipeline, "calibrate_file", refuse)
    monkeypatch.setattr(pipeline, "_calibrate_in_processes", refuse)


def test_two_inputs_with_the_same_output_name(tmp_path, no_work):
    a = _l1(tmp_path / "a" / "x_uncal.asdf")
    b = _l1(tmp_path / "b" / "x_uncal.asdf")
    with pytest.raises(ParameterError) as info:
        calibrate([a, b], tmp_path / "out", workers=2)
    assert str(a) in str(info.value) and str(b) in str(info.value)
    with pytest.raises(InputFileError, match="given twice"):
        calibrate([a, a], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_existing_output_is_refused_unless_overwrite(tmp_path, no_work):
    a = _l1(tmp_path / "x_uncal.asdf")
    existing = tmp_path / "out" / "x_cal.asdf"
    existing.parent.mkdir()
    existing.write_bytes(b"earlier result")
    with pytest.raises(OutputExistsError, match="x_cal.asdf"):
        calibrate([a], tmp_path / "out")
    assert existing.read_bytes() == b"earlier result"
    with pytest.raises(AssertionError, match="calibration started"):  # allowed: gets to the work
        calibrate([a], tmp_path / "out", overwrite=True)


def test_overrides_are_used_or_refused(tmp_path, no_work):
    a = _l1(tmp_path / "x_uncal.asdf")
    missing = tmp_path / "nowhere" / "dark.asdf"
    with pytest.raises(InputFileError, match=str(missing)):
        calibrate([a], tmp_path / "out", options=CalibrationOptions(overrides={"dark": missing}))
    with pytest.raises(ParameterError, match="no calibration step reads a inverselinearity"):
        calibrate([a], tmp_path / "out", options=CalibrationOptions(overrides={"inverselinearity": missing}))
    with pytest.raises(InputFileError, match="cannot be used as the refpix reference"):  # refpix reads one
        calibrate([a], tmp_path / "out", options=CalibrationOptions(overrides={"refpix": missing}))
    with pytest.raises(ParameterError, match="skipped"):
        calibrate([a], tmp_path / "out", options=CalibrationOptions(skip=("dark",), overrides={"dark": missing}))
    not_a_dark = tmp_path / "y_uncal.asdf"
    _l1(not_a_dark)
    with pytest.raises(InputFileError, match="cannot be used as the dark reference"):
        calibrate([a], tmp_path / "out", options=CalibrationOptions(overrides={"dark": not_a_dark}))
    assert not (tmp_path / "out").exists()


def test_an_input_failing_during_the_work_keeps_the_others(tmp_path, monkeypatch):
    inputs = [_l1(tmp_path / f"{name}_uncal.asdf") for name in ("a", "b", "c")]

    def fake_calibrate_file(path, output_dir, options, overwrite=True):
        if path.name.startswith("b"):
            raise InputFileError(path, "array 'data' cannot be read")
        target = tmp_path / "out" / pipeline.output_name(path)
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(b"L2")
        return target, {}

    monkeypatch.setattr(pipeline, "calibrate_file", fake_calibrate_file)
    finished = []
    with pytest.raises(InputFileError, match=r"b_uncal.asdf: array 'data'"):
        calibrate(inputs, tmp_path / "out", workers=1, progress=finished.append)
    assert [p.name for p in finished] == ["a_cal.asdf", "c_cal.asdf"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_cal.asdf", "c_cal.asdf"]
