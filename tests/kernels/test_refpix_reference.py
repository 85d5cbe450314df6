"""The correction with fixed frequency coefficients (a REFPIX reference) against the simulator's truth."""

import numpy as np
import pytest

from romanflow.detector import FRAME_TIME, N_BORDER, SMALL_SCIENCE_SIZE, ReadPattern, ma_table
from romanflow.detector_model import DetectorModel
from romanflow.kernels.dark_decay import dark_decay_columns, dark_decay_signal
from romanflow.kernels.refpix import apply_irrc, correct_reference_pixels
from romanflow.simulate.correlated_noise import correlated_noise_resultants

SCIENCE = (slice(N_BORDER, -N_BORDER),) * 2
MODEL = DetectorModel("WFI05", SMALL_SCIENCE_SIZE)           # 256 x 256: two channels
READ_PATTERN = ReadPattern(ma_table(4).as_list(), FRAME_TIME)
N_READS = np.asarray(READ_PATTERN.n_reads, dtype=np.float32)[:, None, None]


@pytest.fixture(scope="module")
def coefficients():
    gamma, zeta, alpha = MODEL.refpix_coefficients()
    return gamma[None], zeta[None], alpha[None]


def _noise(seed):
    """Correlated noise (main array, amp33) and the white read noise of the main array (DN)."""
    rng = np.random.default_rng(seed)
    noise, amp33 = correlated_noise_resultants(MODEL.shape, READ_PATTERN.n_reads, MODEL.correlated_noise, rng)
    white = rng.standard_normal(noise.shape).astype(np.float32) * MODEL.read_noise / np.sqrt(N_READS)
    return noise, amp33, white


def _slope(cube):
    t = READ_PATTERN.mean_times - READ_PATTERN.mean_times.mean()
    return np.tensordot((t / np.sum(t**2)).astype(np.float32), cube, axes=(0, 0))


def test_reference_removes_correlated_noise_at_least_as_well_as_self_calibration(coefficients):
    """Correlated power and common offset left in the rates (white noise subtracted), over 12 noise draws."""
    left = {"raw": [], "reference": [], "self": []}
    for seed in range(12):
        noise, amp33, white = _noise(seed)
        data = noise + white + MODEL.bias
        amp33 = amp33 + np.float32(1000.0)
        for name, corrected in (("raw", data), ("reference", apply_irrc(data, amp33, *coefficients)),
                                ("self", correct_reference_pixels(data, amp33))):
            rate = _slope(corrected - white)[SCIENCE]               # the bias has no slope
            left[name].append((rate.var(), rate.mean() ** 2))
    power = {name: np.mean(values, axis=0) for name, values in left.items()}
    assert power["reference"][0] < 0.45 * power["raw"][0]                 # total correlated power, (DN/s)²
    assert power["reference"][0] <= power["self"][0]
    assert power["reference"][1] < 0.05 * power["raw"][1]                 # common offset per exposure
    assert power["reference"][1] <= 1.05 * power["self"][1]


def test_residual_variance_is_predicted_from_the_coefficients(coefficients):
    noise, amp33, white = _noise(21)
    corrected, residual = apply_irrc(noise + white, amp33, *coefficients, return_residual_variance=True)
    left = corrected - white
    left -= left.mean(axis=0)                                           # per-pixel constants change no slope
    measured = np.array([frame[SCIENCE].var() for frame in left])       # DN² per sample, each resultant
    channel_own = MODEL.correlated_noise.channel_1f ** 2 / N_READS.ravel()  # not correctable, not predicted
    np.testing.assert_allclose(residual, measured - channel_own, rtol=0.2)


def test_known_signal_of_the_reference_columns_stays_out_of_the_correction(coefficients):
    """The decay after reset is in every pixel but not in amp33: the columns must not pass it on."""
    amplitude, time_constant = MODEL.dark_decay
    decay = np.stack([dark_decay_signal(amplitude, time_constant, READ_PATTERN, MODEL.shape, k)
                      for k in range(READ_PATTERN.n_resultants)])
    amp33 = np.zeros((READ_PATTERN.n_resultants, MODEL.shape[0], 128), np.float32)
    columns = np.r_[0:4, MODEL.shape[1] - 4:MODEL.shape[1]]
    column_decay = dark_decay_columns(amplitude, time_constant, READ_PATTERN, MODEL.shape, columns)
    np.testing.assert_allclose(column_decay, decay[:, :, columns], rtol=1e-5)
    leaked = _slope(decay - apply_irrc(decay, amp33, *coefficients))[SCIENCE].mean()
    kept_out = _slope(decay - apply_irrc(decay, amp33, *coefficients, column_signal=column_decay))[SCIENCE]
    decay_slope = _slope(decay)[SCIENCE].mean()                          # about -3e-3 DN/s
    assert abs(leaked) > 0.1 * abs(decay_slope)
    assert np.abs(kept_out).max() < 1e-6


def test_coefficients_of_another_frame_are_refused(coefficients):
    noise, amp33, _ = _noise(3)
    with pytest.raises(ValueError, match="gamma has shape"):
        apply_irrc(noise[:, :128], amp33[:, :128], *coefficients)       # half the rows: other frequencies
    gamma, zeta, alpha = coefficients
    one_per_channel = [np.repeat(c, 2, axis=0) for c in coefficients]
    np.testing.assert_allclose(apply_irrc(noise, amp33, *one_per_channel), apply_irrc(noise, amp33, gamma, zeta,
                                                                                       alpha), atol=1e-5)
