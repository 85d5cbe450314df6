"""The detector parameter set shared by the simulator and the reference synthesizer."""

from __future__ import annotations

import numpy as np

from romanflow import dq
from romanflow.detector import N_BORDER
from romanflow.detector_model import DetectorModel, measured_from_linear


def test_reproducible_and_distinct_per_detector():
    a, b, c = DetectorModel("WFI01", 248), DetectorModel("WFI01", 248), DetectorModel("WFI02", 248)
    assert np.array_equal(a.read_noise, b.read_noise) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.read_noise, c.read_noise)
    # detector-wide values do not depend on the size of the test detector
    assert DetectorModel("WFI01", 504).correlated_noise == a.correlated_noise


def test_linearity_inverse_is_exact():
    model = DetectorModel("WFI03", 248)
    linear = np.linspace(500.0, 65000.0, 50)[:, None] * np.ones((1, 256))
    coeffs = model.linearity_coeffs[:, :50, :]
    measured = measured_from_linear(linear, coeffs)
    back = sum(coeffs[k].astype(float) * measured**k for k in range(coeffs.shape[0]))
    assert np.max(np.abs(back - linear)) < 1e-9  # DN at up to 65000 DN; measured 1.5e-11
    assert np.all(measured < linear)  # classic non-linearity: the measured level falls behind


def test_reference_pixels_and_defects():
    model = DetectorModel("WFI05", 248)
    border = np.ones(model.shape, bool)
    border[N_BORDER:-N_BORDER, N_BORDER:-N_BORDER] = False
    assert np.all(model.mask[border] & dq.REFERENCE_PIXEL)
    assert np.all(model.pixel_response[border] == 0) and np.all(model.dark_rate[border] == 0)
    dead = (model.mask & dq.DEAD) != 0
    assert dead.any() and np.all(model.pixel_response[dead] == 0)
    assert np.all((model.mask[dead] & dq.DO_NOT_USE) != 0)
    assert np.all(model.saturation < model.full_well)


def test_flat_in_dn_removes_the_channel_gains():
    model = DetectorModel("WFI07", 504)
    s = (slice(N_BORDER, -N_BORDER),) * 2
    electrons = 100.0 * model.flat("F158")  # a uniform illumination, e-/s
    rate = electrons / model.gain  # what each pixel measures (DN/s)
    flat_dn = model.flat_dn("F158")
    good = model.pixel_response[s] > 0
    corrected = (rate / np.where(flat_dn > 0, flat_dn, 1))[s][good]
    # float32 flat and gains: measured 1.8e-7 relative (1.5 float32 ulp)
    np.testing.assert_allclose(corrected, 100.0 / model.nominal_gain, rtol=1e-6)
