"""Linearity kernel: exact inversion of the model, the averaging term, flags."""

import numpy as np
import pytest

from romanflow import dq
from romanflow.detector import FRAME_TIME, ReadPattern, ma_table
from romanflow.detector_model import DetectorModel, measured_from_linear
from romanflow.kernels.linearity import correct_linearity
from romanflow.kernels.ramp import fit_ramps
from romanflow.kernels.saturation import flag_saturation

PATTERN = ReadPattern(ma_table(4).as_list(), FRAME_TIME)


def _coeffs(npix, c2=2.3e-6, c3=1.5e-11):
    c = np.zeros((4, 1, npix), np.float32)
    c[1], c[2], c[3] = 1.0, c2, c3
    return c


def _resultants_from_reads(linear_reads, coeffs):
    """Apply the non-linearity read by read, then average into resultants (DN)."""
    measured = {r: measured_from_linear(v, coeffs[:, 0]) for r, v in linear_reads.items()}
    return np.array([np.mean([measured[r] for r in reads], axis=0) for reads in PATTERN.read_pattern],
                    np.float32)[:, None, :]


def test_single_read_values_are_inverted_exactly():
    model = DetectorModel("WFI03", science_size=248)
    coeffs = model.linearity_coeffs[:, :8, :64]
    linear = np.linspace(500, 55000, 5)[:, None, None] * np.ones((1, 8, 64))
    measured = measured_from_linear(linear, coeffs).astype(np.float32)
    corrected, no_lin = correct_linearity(measured, coeffs)
    np.testing.assert_allclose(corrected, linear, rtol=2e-6)
    assert not no_lin.any()


def test_nan_coefficients_and_saturated_resultants_are_left_alone():
    coeffs = _coeffs(3)
    coeffs[2, 0, 1] = np.nan
    values = np.full((4, 1, 3), 30000.0, np.float32)
    gdq = np.zeros(values.shape, np.uint8)
    gdq[2:, 0, 2] = dq.SATURATED
    out, no_lin = correct_linearity(values, coeffs, gdq)
    assert no_lin.tolist() == [[False, True, False]]
    assert np.all(out[:, 0, 1] == 30000.0)
    assert np.all(out[2:, 0, 2] == 30000.0) and np.all(out[:2, 0, 2] > 30000.0)
    inplace = values.copy()
    out2, _ = correct_linearity(inplace, coeffs, gdq, inplace=True)
    assert out2 is inplace and np.array_equal(out2, out)
    with pytest.raises(ValueError, match="do not match"):
        correct_linearity(values, coeffs[:, :, :2])


def test_averaging_bias_of_table4_at_high_flux():
    """Non-linear reads averaged into resultants bias a naive correction by up to
    ~0.6% of the rate for bright, saturating pixels; the read-reconstruction term
    brings it below 0.1%."""
    rate = np.array([100.0, 400.0, 800.0, 1200.0, 2000.0, 3000.0, 4000.0])  # DN/s
    coeffs = _coeffs(rate.size)
    linear_reads = {r: np.minimum(1000.0 + rate * r * FRAME_TIME, 64000.0) for r in range(1, PATTERN.last_read + 1)}
    res = _resultants_from_reads(linear_reads, coeffs)
    threshold = measured_from_linear(np.full((1, rate.size), 0.97 * 64000.0), coeffs).astype(np.float32)
    gdq = flag_saturation(res, threshold, PATTERN)
    naive, _ = correct_linearity(res, coeffs, gdq)
    rebuilt, _ = correct_linearity(res, coeffs, gdq, read_pattern=PATTERN)
    for method in ("casertano", "likely"):
        bias_naive = (fit_ramps(naive, gdq, 5.0, 2.0, PATTERN, method=method).slope[0] - rate) / rate
        bias = (fit_ramps(rebuilt, gdq, 5.0, 2.0, PATTERN, method=method).slope[0] - rate) / rate
        assert np.max(np.abs(bias_naive)) > 3e-3  # the effect is real and above 0.1%
        assert np.max(np.abs(bias)) < 1e-3, bias
        assert np.all(np.abs(bias) <= np.abs(bias_naive) + 1e-6)


def test_ramps_saturating_inside_a_long_resultant_are_unbiased():
    """MA table 11: a pixel that saturates during resultant 5 (reads 21-36) keeps resultant 4 (reads
    5-20); the averaging term must take its rate from unflagged resultants, not from resultant 5,
    which the backward saturation rule marks DO_NOT_USE although its last reads hit the full well."""
    pattern = ReadPattern(ma_table(11).as_list(), FRAME_TIME)
    crossing_read = np.linspace(22.0, 35.0, 40)  # read at which the linear level reaches 0.97 full well
    rate = (0.97 * 64000.0 - 1000.0) / (crossing_read * FRAME_TIME)  # DN/s
    coeffs = _coeffs(rate.size)
    linear = {r: np.minimum(1000.0 + rate * r * FRAME_TIME, 64000.0) for r in range(1, pattern.last_read + 1)}
    measured = {r: measured_from_linear(v, coeffs[:, 0]) for r, v in linear.items()}
    res = np.array([np.mean([measured[r] for r in reads], axis=0) for reads in pattern.read_pattern],
                   np.float32)[:, None, :]
    threshold = measured_from_linear(np.full((1, rate.size), 0.97 * 64000.0), coeffs).astype(np.float32)
    gdq = flag_saturation(res, threshold, pattern)
    assert np.all(gdq[4] != 0) and np.all(gdq[3] == 0)
    rebuilt, _ = correct_linearity(res, coeffs, gdq, read_pattern=pattern)
    for method in ("casertano", "likely"):
        fit = fit_ramps(rebuilt, gdq, 5.0, 2.0, pattern, method=method)
        bias = (fit.slope[0] - rate) / fit.err[0]
        assert np.max(np.abs(bias)) < 0.15, f"{method}: largest bias {np.max(np.abs(bias)):.3f} sigma"
