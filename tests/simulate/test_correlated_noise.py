"""Correlated read-noise injection: amplitudes, read-time sharing between outputs, reproducibility."""

import numpy as np
import pytest

from romanflow.detector import CHANNEL_WIDTH, N_BORDER, SMALL_SCIENCE_SIZE
from romanflow.detector_model import CorrelatedNoiseParameters
from romanflow.simulate.correlated_noise import correlated_noise_resultants

N = SMALL_SCIENCE_SIZE + 2 * N_BORDER  # 256: two channels
PARAMS = CorrelatedNoiseParameters(common_1f=3.0, channel_1f=1.0, acn=1.0, white_ref=5.0)


def time_ordered(frame):
    """(…, ny, nx) → (…, n_channels, ny, 128): each channel's pixels in read order."""
    *lead, ny, nx = frame.shape
    split = frame.reshape(*lead, ny, nx // CHANNEL_WIDTH, CHANNEL_WIDTH).copy()
    split[..., 1::2, :] = split[..., 1::2, ::-1]
    return np.moveaxis(split, -2, -3)


def test_injected_noise_has_specified_rms_and_read_scaling():
    rng = np.random.default_rng(11)
    noise, amp33 = correlated_noise_resultants((N, N), [1] * 24 + [4] * 24, PARAMS, rng)
    expected = PARAMS.common_1f**2 + PARAMS.channel_1f**2 + PARAMS.acn**2
    single, quad = noise[:24].var(), noise[24:].var()
    assert single == pytest.approx(expected, rel=0.08)
    assert quad * 4 == pytest.approx(expected, rel=0.08)
    assert amp33[:24].var() == pytest.approx(expected + PARAMS.white_ref**2, rel=0.06)
    assert noise.dtype == np.float32 and amp33.shape == (48, N, 128)


def test_amp33_and_channels_share_the_common_component_in_read_time():
    rng = np.random.default_rng(12)
    noise, amp33 = correlated_noise_resultants((N, N), [1] * 24, PARAMS, rng)
    channels = time_ordered(noise)                      # (n_res, 2, ny, 128)
    shared = PARAMS.common_1f**2 + PARAMS.acn**2
    cov_amp = np.mean((channels[:, 0] - channels[:, 0].mean()) * (amp33 - amp33.mean()))
    cov_ch = np.mean((channels[:, 0] - channels[:, 0].mean()) * (channels[:, 1] - channels[:, 1].mean()))
    assert cov_amp == pytest.approx(shared, rel=0.12)
    assert cov_ch == pytest.approx(shared, rel=0.12)
    # Alternating-column noise alone: a slowly varying amplitude whose sign alternates every sample.
    acn_only = CorrelatedNoiseParameters(common_1f=0.0, channel_1f=0.0, acn=1.0, white_ref=0.0)
    noise, amp33 = correlated_noise_resultants((N, N), [1] * 8, acn_only, np.random.default_rng(13))
    series = time_ordered(noise)[:, 0]
    demodulated = series * (-1.0) ** np.arange(CHANNEL_WIDTH)            # a(t): smooth
    assert series.std() == pytest.approx(1.0, rel=0.15)
    assert np.corrcoef(demodulated[..., :-1].ravel(), demodulated[..., 1:].ravel())[0, 1] > 0.75
    assert np.corrcoef(series[..., :-1].ravel(), series[..., 1:].ravel())[0, 1] < -0.75
    # shared in read time: channel 1 (read right to left) and amp33 see the same series as channel 0
    assert np.allclose(time_ordered(noise)[:, 1], time_ordered(noise)[:, 0], atol=1e-4)
    assert np.allclose(amp33, time_ordered(noise)[:, 0], atol=1e-4)


def test_injection_is_reproducible_and_rejects_bad_shapes():
    a = correlated_noise_resultants((N, N), [1, 2], PARAMS, np.random.default_rng(5))
    b = correlated_noise_resultants((N, N), [1, 2], PARAMS, np.random.default_rng(5), workers=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="multiple of 128"):
        correlated_noise_resultants((N, 200), [1], PARAMS, np.random.default_rng(0))
