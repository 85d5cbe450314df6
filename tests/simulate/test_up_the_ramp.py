"""Up-the-ramp sampling against the statistics it must reproduce."""

import numpy as np
import pytest

from romanflow.detector import FRAME_TIME, ReadPattern, ma_table
from romanflow.detector_model import measured_from_linear
from romanflow.simulate.ramp import (
    COSMIC_RAY_RATE,
    PIXEL_AREA_CM2,
    draw_cosmic_rays,
    read_to_resultant,
    sample_resultants,
)

SHAPE = (256, 256)
PATTERN = ma_table(4).as_list()


def _uniform(value, shape=SHAPE):
    return np.full(shape, value, dtype=np.float32)


def _linear_coeffs(shape=SHAPE):
    c = np.zeros((4,) + shape, dtype=np.float32)
    c[1] = 1.0
    return c


def _run(rate_e, *, gain=2.0, bias=1000.0, read_noise=5.0, full_well=1e9, coeffs=None, seed=1,
         pattern=PATTERN, cosmic_rays=None, shape=SHAPE):
    seeds = np.random.SeedSequence(seed).generate_state(shape[0], dtype=np.uint32)
    return sample_resultants(
        _uniform(rate_e, shape), _uniform(gain, shape), _uniform(bias, shape), _uniform(full_well, shape),
        _linear_coeffs(shape) if coeffs is None else coeffs, _uniform(read_noise, shape), pattern, FRAME_TIME,
        seeds, cosmic_rays)


def test_read_to_resultant_skips_unused_reads():
    index, n = read_to_resultant([[1], [2, 3], [5]])
    assert index.tolist() == [0, 1, 1, -1, 2]
    assert n.tolist() == [1, 2, 1]


def test_mean_counts_follow_rate_times_time():
    rate_e, gain, bias = 20.0, 2.0, 1000.0
    out = _run(rate_e, gain=gain, bias=bias)
    rp = ReadPattern(PATTERN, FRAME_TIME)
    expected = bias + rate_e * rp.mean_times / gain  # DN
    mean = out.reshape(out.shape[0], -1).mean(axis=1)
    # standard error of each mean (DN): Poisson + read noise over 65536 pixels
    sigma = np.sqrt(rate_e * rp.mean_times / gain**2 + 25.0) / np.sqrt(out[0].size)
    assert np.all(np.abs(mean - expected) < 5 * sigma), (mean - expected) / sigma


def test_resultant_covariance_matches_read_pattern_formula():
    rate_e, gain, read_noise = 30.0, 2.0, 5.0
    out = _run(rate_e, gain=gain, read_noise=read_noise, seed=7).reshape(len(PATTERN), -1).astype(np.float64)
    rp = ReadPattern(PATTERN, FRAME_TIME)
    # Var(charge/gain) = rate_e·t/gain²: the formula's "flux" is rate_e/gain² in DN²/s
    model = rp.covariance(rate_e / gain**2, read_noise)
    diff = np.diff(out, axis=0)
    d = np.diff(np.eye(len(PATTERN)), axis=0)
    model_diff = d @ model @ d.T
    sample_diff = np.cov(diff)
    rel = np.diag(sample_diff) / np.diag(model_diff) - 1
    # 65536 pixels: the sample variance has a 0.55% relative error
    assert np.all(np.abs(rel) < 0.03), rel
    # adjacent differences are anti-correlated by the shared resultant: check those too
    off = np.diag(sample_diff, 1)
    off_model = np.diag(model_diff, 1)
    scale = np.sqrt(np.diag(model_diff)[:-1] * np.diag(model_diff)[1:])
    assert np.all(np.abs(off - off_model) / scale < 0.03)


def test_nonlinearity_is_the_exact_inverse_of_the_correction():
    rng = np.random.default_rng(3)
    coeffs = _linear_coeffs()
    coeffs[2] = rng.uniform(1.5e-6, 2.5e-6, SHAPE)
    coeffs[3] = rng.uniform(0.5e-11, 1.5e-11, SHAPE)
    rate_e, gain, bias = 400.0, 2.0, 1000.0
    out = _run(rate_e, gain=gain, bias=bias, read_noise=0.0, coeffs=coeffs).astype(np.float64)
    c = coeffs.astype(np.float64)
    # single-read resultants: correcting them gives back bias + integer charge / gain
    for k in (0, 1, len(PATTERN) - 1):
        m = out[k]
        linear = c[0] + c[1] * m + c[2] * m**2 + c[3] * m**3
        charge = (linear - bias) * gain
        assert np.max(np.abs(charge - np.round(charge))) < 0.02  # float32 output, e-
    # the last read is visibly non-linear and agrees with measured_from_linear of the mean level
    t_last = FRAME_TIME * PATTERN[-1][-1]
    expected = measured_from_linear(np.full(SHAPE, bias + rate_e * t_last / gain), coeffs)
    assert abs(np.mean(expected - (bias + rate_e * t_last / gain))) > 100  # the effect is real
    stderr = np.sqrt(rate_e * t_last) / gain / np.sqrt(out[-1].size)  # Poisson scatter of the mean (DN)
    assert abs(np.mean(out[-1] - expected)) < 5 * stderr


def test_full_well_caps_the_charge():
    coeffs = _linear_coeffs()
    coeffs[2] = 2e-6
    out = _run(5000.0, gain=2.0, bias=1000.0, read_noise=0.0, full_well=60000.0, coeffs=coeffs)
    plateau = measured_from_linear(np.array(60000.0), coeffs[:, :1, :1])[0, 0]
    assert np.allclose(out[-1], plateau, atol=0.05)
    assert np.all(out[-2] == out[-1])


def test_cosmic_ray_count_follows_the_rate():
    eligible = np.ones((1024, 1024), dtype=bool)
    eligible[:, :4] = False
    n_reads = 44
    hits = draw_cosmic_rays(eligible, n_reads, FRAME_TIME, np.random.default_rng(11))
    expected = COSMIC_RAY_RATE * PIXEL_AREA_CM2 * n_reads * FRAME_TIME * eligible.sum()
    assert abs(len(hits["y"]) - expected) < 4 * np.sqrt(expected)
    assert np.all(eligible[hits["y"], hits["x"]])
    assert hits["read"].min() >= 1 and hits["read"].max() <= n_reads
    amp = hits["amplitude_e"]
    assert 300 < np.median(amp) < 3000 and amp.max() > 3000
    # arrival times are uniform: reads in each half of the exposure are equally common
    early = np.sum(hits["read"] <= n_reads // 2)
    assert abs(early - len(amp) / 2) < 4 * np.sqrt(len(amp) / 4)


def test_cosmic_ray_jump_appears_at_its_read():
    hits = {"y": np.array([10, 20]), "x": np.array([30, 40]), "read": np.array([4, 30]),
            "amplitude_e": np.array([1000.0, 3000.0])}
    out = _run(0.0, gain=2.0, bias=1000.0, read_noise=0.0, cosmic_rays=hits).astype(np.float64)
    index, n = read_to_resultant(PATTERN)
    ramp = out[:, 10, 30] - 1000.0
    # read 4 is the second read of resultant 2 ([3, 4]): half the jump there, all of it afterwards
    assert ramp[:2] == pytest.approx([0, 0], abs=1e-3)
    assert ramp[2] == pytest.approx(500.0 / 2, abs=1e-2)
    assert np.allclose(ramp[3:], 500.0, atol=1e-2)
    ramp2 = out[:, 20, 40] - 1000.0
    k = index[29]
    reads = PATTERN[k]
    assert ramp2[k] == pytest.approx(1500.0 * sum(r >= 30 for r in reads) / len(reads), abs=1e-2)
    assert np.allclose(ramp2[:k], 0.0, atol=1e-3) and np.allclose(ramp2[k + 1:], 1500.0, atol=1e-2)
    others = np.ones(SHAPE, bool)
    others[10, 30] = others[20, 40] = False
    assert np.all(out[:, others] == 1000.0)


def test_same_seeds_same_resultants_different_seeds_differ():
    a = _run(3.0, seed=5)
    b = _run(3.0, seed=5)
    c = _run(3.0, seed=6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
