"""The WFI18 first-read transient: injected by the simulator on WFI18 only, removed by its step."""

import copy

import numpy as np
import pytest

from romanflow import dq, geometry
from romanflow.calibrate import CalibrationOptions, calibrate_exposure, resolve_references
from romanflow.calibrate.wfi18_transient import GROUP_WFI18_TRANSIENT, wfi18_transient
from romanflow.detector import FRAME_TIME, SMALL_SCIENCE_SIZE, ReadPattern
from romanflow.detector_model import DetectorModel
from romanflow.exposure import RampExposure
from romanflow.kernels.wfi18_transient import transient_signal
from romanflow.refdata import ReferenceStore
from romanflow.simulate import random_scene, simulate_detector

SIZE = SMALL_SCIENCE_SIZE


@pytest.fixture(scope="module")
def wfi18():
    """A sparse WFI18 field (MA table 4: read 1 alone in resultant 1) calibrated with and without the step."""
    pointing = geometry.pointing_for(270.0, 66.0, 0.0)
    ra, dec = geometry.DetectorProjection("WFI18", pointing, SIZE).pixel_to_world(np.array([123.5]),
                                                                                  np.array([123.5]))
    scene = random_scene(float(ra[0]), float(dec[0]), 0.006, n_sources=300, faint_limit=21.0, star_fraction=0.8,
                         seed=3)
    sim = simulate_detector(scene, "WFI18", "F158", ma_table_number=4, pointing=pointing, science_size=SIZE, seed=3)
    import tempfile

    store = ReferenceStore(tempfile.mkdtemp(), science_size=SIZE)
    images = {}
    for label, skip in (("corrected", ()), ("plain", ("wfi18_transient",))):
        exposure = copy.deepcopy(sim.exposure)
        options = CalibrationOptions(context=store, skip=skip)
        images[label] = calibrate_exposure(exposure, options, resolve_references(exposure.meta, SIZE, options))[0]
    return sim, images


def _row_bias(image, truth):
    """Median rate error of sky pixels in each row (DN/s)."""
    error = image.data - truth
    usable = ((image.dq & dq.DO_NOT_USE) == 0) & np.isfinite(error) & (truth < 5.0)
    return np.array([np.median(error[y][usable[y]]) for y in range(error.shape[0])])


def test_the_transient_is_injected_on_wfi18_and_removed(wfi18):
    sim, images = wfi18
    plain, corrected = (_row_bias(images[k], sim.rate_dn) for k in ("plain", "corrected"))
    assert plain[:40].mean() < -0.02                  # the first rows read: rates low by the first read's excess
    assert abs(corrected[:40].mean()) < 0.004
    assert abs(corrected.mean()) < 0.004 < abs(plain.mean())
    assert images["corrected"].meta["cal_step"]["wfi18_transient"] == "COMPLETE"
    assert any(line.startswith("wfi18_transient: subtracted") for line in images["corrected"].meta["cal_logs"])


def _exposure(detector, read_pattern):
    model = DetectorModel(detector, SIZE)
    pattern = ReadPattern(read_pattern, FRAME_TIME)
    data = (model.bias[None] + 2.0 * pattern.mean_times[:, None, None]).astype(np.float32)
    data[0] += transient_signal(DetectorModel("WFI18", SIZE).first_read_transient, model.shape)
    meta = {"instrument": {"detector": detector}, "exposure": {"read_pattern": read_pattern, "frame_time": FRAME_TIME}}
    return RampExposure(data=data, amp33=np.zeros((len(read_pattern), model.shape[0], 128), np.float32), meta=meta,
                        groupdq=np.zeros(data.shape, np.uint8), pixeldq=np.zeros(model.shape, np.uint32))


def test_other_detectors_are_left_alone():
    assert DetectorModel("WFI17", SIZE).first_read_transient is None
    exposure = _exposure("WFI17", [[1], [2], [3], [4], [5], [6]])
    before = exposure.data.copy()
    wfi18_transient(exposure)
    np.testing.assert_array_equal(exposure.data, before)
    assert exposure.meta["cal_step"]["wfi18_transient"] == "N/A"


def test_a_transient_that_cannot_be_fitted_is_masked():
    exposure = _exposure("WFI18", [[1], [2], [3], [4]])
    before = exposure.data.copy()
    wfi18_transient(exposure)
    np.testing.assert_array_equal(exposure.data, before)
    masked = (exposure.groupdq[0] & (dq.DO_NOT_USE | GROUP_WFI18_TRANSIENT)) == (dq.DO_NOT_USE | GROUP_WFI18_TRANSIENT)
    rows = masked.all(axis=1)
    assert rows[:60].all() and not rows[70:].any()                     # the first ~24 % of 256 rows
    assert not exposure.groupdq[1:].any()
