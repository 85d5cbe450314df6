"""The refpix step: the REFPIX reference when one is selected or given, the self-calibrating correction otherwise."""

import logging

import numpy as np
import pytest

from romanflow.calibrate.inputs import check_reference_frame
from romanflow.calibrate.refpix import RESIDUAL_VARIANCE_KEY, SELF_CALIBRATING_NOTE, refpix
from romanflow.detector import FRAME_TIME, SMALL_SCIENCE_SIZE, ReadPattern, ma_table
from romanflow.detector_model import DetectorModel
from romanflow.errors import InputFileError
from romanflow.exposure import RampExposure
from romanflow.formats.reference_io import read_reference
from romanflow.kernels.refpix import apply_irrc, correct_reference_pixels
from romanflow.refdata import ReferenceStore, select_reference
from romanflow.simulate.correlated_noise import correlated_noise_resultants

MODEL = DetectorModel("WFI05", SMALL_SCIENCE_SIZE)
READ_PATTERN = ReadPattern(ma_table(4).as_list(), FRAME_TIME)
META = {"instrument": {"name": "WFI", "detector": "WFI05", "optical_element": "F158"},
        "exposure": {"type": "WFI_IMAGE", "start_time": "2027-06-01T00:00:00", "ma_table_number": 4,
                     "read_pattern": READ_PATTERN.read_pattern, "frame_time": FRAME_TIME}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ReferenceStore(tmp_path_factory.mktemp("refs"), science_size=SMALL_SCIENCE_SIZE)


def _exposure():
    rng = np.random.default_rng(5)
    noise, amp33 = correlated_noise_resultants(MODEL.shape, READ_PATTERN.n_reads, MODEL.correlated_noise, rng)
    data = noise + MODEL.bias + rng.standard_normal(noise.shape).astype(np.float32) * 5.0
    return RampExposure(data=data, amp33=amp33 + np.float32(1000.0), meta={**META, "cal_logs": []},
                        pixeldq=np.zeros(MODEL.shape, np.uint32))


def test_the_default_context_selects_the_synthesized_reference_and_the_step_applies_it(store):
    path = select_reference("refpix", META, store)
    reference = read_reference(path, "refpix")
    assert reference["alpha"].shape == (1, MODEL.shape[0] * 142 // 2 + 1)      # one row for all channels
    np.testing.assert_array_equal(reference["alpha"][0], MODEL.refpix_coefficients()[2])
    check_reference_frame(reference, MODEL.shape)
    exposure = _exposure()
    raw = exposure.data.copy()
    refpix(exposure, reference)
    expected = apply_irrc(raw, exposure.amp33, reference["gamma"], reference["zeta"], reference["alpha"])
    np.testing.assert_allclose(exposure.data, expected, atol=1e-4)
    assert exposure.meta["ref_file"]["refpix"] == path.name
    assert exposure.meta["cal_step"]["refpix"] == "COMPLETE"
    assert SELF_CALIBRATING_NOTE not in exposure.meta["cal_logs"]
    assert 0.5 < exposure.extra[RESIDUAL_VARIANCE_KEY] < 20.0                  # DN² per read


def test_without_a_reference_the_self_calibrating_correction_runs_with_a_note(store, caplog):
    exposure = _exposure()
    raw = exposure.data.copy()
    with caplog.at_level(logging.INFO, logger="romanflow.calibrate.refpix"):
        refpix(exposure, None)
    assert SELF_CALIBRATING_NOTE in caplog.text
    assert SELF_CALIBRATING_NOTE in exposure.meta["cal_logs"]
    assert exposure.meta["ref_file"]["refpix"] == "N/A"
    np.testing.assert_allclose(exposure.data, correct_reference_pixels(raw, exposure.amp33), atol=1e-4)
    assert select_reference("refpix", META, store, {"refpix": "N/A"}) is None  # switched off: the same fallback


def test_a_reference_for_another_frame_is_refused_naming_the_file(store, tmp_path):
    path = select_reference("refpix", META, store)
    reference = read_reference(path, "refpix")
    with pytest.raises(InputFileError, match=rf"{path.name}: refpix coefficients are 1x\d+; a 128x256 frame"):
        check_reference_frame(reference, (128, 256))
