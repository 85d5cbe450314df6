"""Dark-decay kernel: read times, resultant averaging, exact removal."""

import numpy as np
import pytest

from romanflow.detector import FRAME_TIME, PIXEL_TIME, ROW_PERIOD, ReadPattern, ma_table
from romanflow.kernels.dark_decay import dark_decay_signal, pixel_read_times, subtract_dark_decay

PATTERN = ReadPattern(ma_table(4).as_list(), FRAME_TIME)


def test_pixel_read_times_follow_the_channel_read_order():
    times = pixel_read_times((3, 256))
    assert times[0, 0] == 0.0 and times[0, 127] == pytest.approx(127 * PIXEL_TIME)
    assert times[0, 255] == 0.0 and times[0, 128] == pytest.approx(127 * PIXEL_TIME)  # odd channel: reversed
    assert times[2, 0] == pytest.approx(2 * ROW_PERIOD * PIXEL_TIME)


def test_signal_is_the_mean_over_each_resultants_reads_and_is_removed_exactly():
    amplitude, tau = 0.4, 23.0
    shape = (8, 128)
    t_pixel = pixel_read_times(shape)
    for k, reads in enumerate(PATTERN.read_pattern):
        expected = np.mean([amplitude * np.exp(-((r - 1) * FRAME_TIME + t_pixel) / tau) for r in reads], axis=0)
        np.testing.assert_allclose(dark_decay_signal(amplitude, tau, PATTERN, shape, k), expected, rtol=1e-6)
    cube = np.stack([dark_decay_signal(amplitude, tau, PATTERN, shape, k) for k in range(PATTERN.n_resultants)])
    cube += np.float32(1000.0)
    subtract_dark_decay(cube, amplitude, tau, PATTERN)
    np.testing.assert_allclose(cube, 1000.0, atol=1e-4)
    with pytest.raises(ValueError, match="time constant"):
        subtract_dark_decay(cube, amplitude, 0.0, PATTERN)
