"""The WFI18 first-read transient: fit on synthetic ramps, fallback when it cannot be fitted."""

import numpy as np

from romanflow.detector import FRAME_TIME, ReadPattern, ma_table
from romanflow.kernels.wfi18_transient import (
    first_read_share,
    fit_transient,
    masked_rows,
    subtract_transient,
    transient_signal,
)

TRUTH = (50.0, 0.02, 12.0, 0.15)          # a DN, τa s, b DN, τb s: decays within the 512-row frame (0.36 s)


def _ramps(read_pattern, seed=0, shape=(512, 256)):
    """Resultants of a sky of 0.5-3 DN/s with white read noise, the transient added to read 1 (DN)."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.5, 3.0, shape)
    n_reads = np.array([len(r) for r in read_pattern.read_pattern], dtype=np.float64)
    cube = 1000.0 + rate[None] * read_pattern.mean_times[:, None, None]
    cube += rng.standard_normal(cube.shape) * 5.0 / np.sqrt(n_reads)[:, None, None]
    cube = cube.astype(np.float32)
    cube[0] += np.float32(first_read_share(read_pattern)) * transient_signal(TRUTH, shape)
    return cube


def test_the_fitted_transient_is_removed_to_below_the_noise():
    read_pattern = ReadPattern(ma_table(4).as_list(), FRAME_TIME)
    cube = _ramps(read_pattern)
    injected = transient_signal(TRUTH, cube.shape[1:])
    params = fit_transient(cube, read_pattern)
    assert params is not None
    left = injected - transient_signal(params, cube.shape[1:])          # DN of the first read
    assert np.abs(left).max() < 1.0 and np.abs(injected).max() > 50.0
    subtract_transient(cube, params, read_pattern)
    clean = _ramps(read_pattern)
    clean[0] -= np.float32(first_read_share(read_pattern)) * injected
    np.testing.assert_allclose(cube[0], clean[0], atol=1.0)
    np.testing.assert_array_equal(cube[1:], clean[1:])                   # only resultant 1 holds read 1


def test_fewer_than_five_resultants_are_not_fitted():
    read_pattern = ReadPattern([[1], [2], [3], [4]], FRAME_TIME)
    assert fit_transient(_ramps(read_pattern), read_pattern) is None
    assert masked_rows(4096) == slice(0, 1000)
