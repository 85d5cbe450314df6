"""Correlated read noise: injection statistics and removal by the reference-pixel correction."""

import numpy as np
import pytest

from romanflow.calibrate.refpix import RESIDUAL_VARIANCE_KEY, refpix
from romanflow.detector import FRAME_TIME, N_BORDER, ROW_PERIOD, SMALL_SCIENCE_SIZE, ReadPattern, ma_table
from romanflow.detector_model import CorrelatedNoiseParameters, DetectorModel
from romanflow.exposure import RampExposure
from romanflow.simulate.correlated_noise import correlated_noise_resultants
from romanflow.kernels.refpix import correct_reference_pixels

N = SMALL_SCIENCE_SIZE + 2 * N_BORDER  # 256: two channels
SCIENCE = (slice(N_BORDER, -N_BORDER), slice(N_BORDER, -N_BORDER))
PARAMS = CorrelatedNoiseParameters(common_1f=3.0, channel_1f=1.0, acn=1.0, white_ref=5.0)
WHITE = 5.0  # white read noise of the main array (DN per read)


def ls_slope(cube, read_pattern):
    """Unweighted least-squares slope over the resultants' mean times (DN/s)."""
    t = read_pattern.mean_times - read_pattern.mean_times.mean()
    return np.tensordot(t / np.sum(t**2), cube, axes=(0, 0))


# --- correction -----------------------------------------------------------------------------
def simulate(seed, with_stars=True):
    """Resultants = bias + signal + correlated noise + white noise, and their parts (table 4, 9 resultants)."""
    model = DetectorModel("WFI03", SMALL_SCIENCE_SIZE)
    read_pattern = ReadPattern(ma_table(4).as_list(), FRAME_TIME)
    rng = np.random.default_rng(seed)
    params = model.correlated_noise
    noise, amp33_noise = correlated_noise_resultants((N, N), read_pattern.n_reads, params, rng)
    white = rng.standard_normal(noise.shape).astype(np.float32)
    white *= (WHITE / np.sqrt(read_pattern.n_reads)).astype(np.float32)[:, None, None]
    rate = np.zeros((N, N), dtype=np.float32)
    rate[SCIENCE] = 2.0                                           # flat background (DN/s)
    if with_stars:
        yy, xx = np.mgrid[0:N, 0:N]
        star_rng = np.random.default_rng(1000 + seed)
        for y0, x0, flux in zip(star_rng.uniform(10, N - 10, 60), star_rng.uniform(10, N - 10, 60),
                                star_rng.uniform(20, 400, 60)):
            rate += (flux * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / 4.5)).astype(np.float32)
        science = np.zeros((N, N), dtype=bool)
        science[SCIENCE] = True
        rate[~science] = 0.0                                       # reference pixels see no light
    signal = rate[None] * read_pattern.mean_times.astype(np.float32)[:, None, None]
    resultants = model.bias[None] + signal + noise + white
    amp33 = 1000.0 + rng.normal(0.0, 25.0, (N, 128)).astype(np.float32) + amp33_noise
    return resultants.astype(np.float32), amp33.astype(np.float32), white, rate, read_pattern


def correlated_rate_power(resultants, white, rate, read_pattern):
    """Total and row-banding power ((DN/s)²) of the rate error not explained by white noise."""
    residual = (ls_slope(resultants, read_pattern) - ls_slope(white, read_pattern) - rate)[SCIENCE]
    return residual.var(), residual.mean(axis=1).var()


@pytest.mark.parametrize("seed", [1, 2])
def test_correction_removes_most_correlated_noise_from_rates(seed):
    resultants, amp33, white, rate, read_pattern = simulate(seed)
    corrected = correct_reference_pixels(resultants, amp33)
    total_raw, rows_raw = correlated_rate_power(resultants, white, rate, read_pattern)
    total_cor, rows_cor = correlated_rate_power(corrected, white, rate, read_pattern)
    white_var = ls_slope(white, read_pattern)[SCIENCE].var()
    assert total_raw > 0.2 * white_var                     # the injected noise matters before correction
    assert rows_raw / rows_cor >= 3.0                      # horizontal banding
    assert total_raw / total_cor >= 2.2                    # everything correlated, all frequencies


def test_correction_is_independent_of_the_scene():
    with_stars = simulate(3, with_stars=True)
    without = simulate(3, with_stars=False)
    change_with = correct_reference_pixels(with_stars[0], with_stars[1]) - with_stars[0]
    change_without = correct_reference_pixels(without[0], without[1]) - without[0]
    np.testing.assert_allclose(change_with, change_without, atol=2e-3)
    # and the change of the rate is uncorrelated with the signal
    change_rate = ls_slope(change_with, with_stars[4])[SCIENCE].ravel()
    assert abs(np.corrcoef(change_rate, with_stars[3][SCIENCE].ravel())[0, 1]) < 0.05


def test_bad_reference_pixels_are_ignored():
    resultants, amp33, white, rate, read_pattern = simulate(4)
    mask = np.ones((N, N), dtype=bool)
    mask[10:40, :N_BORDER] = False                             # left reference columns, merged with amp33
    spoiled = resultants.copy()
    spoiled[:, 10:40, :N_BORDER] += np.arange(9, dtype=np.float32)[:, None, None] * 500.0   # wild values
    inside = (slice(None), slice(None), slice(N_BORDER, None))
    clean = correct_reference_pixels(resultants, amp33, reference_mask=mask)
    robust = correct_reference_pixels(spoiled, amp33, reference_mask=mask)
    np.testing.assert_allclose(robust[inside], clean[inside], atol=1e-3)
    naive = correct_reference_pixels(spoiled, amp33)
    assert np.abs(naive[inside] - clean[inside]).max() > 1.0
    spoiled[3, 10:40, :N_BORDER] = np.nan                      # non-finite reference pixels: never used
    np.testing.assert_allclose(correct_reference_pixels(spoiled, amp33, reference_mask=mask)[inside],
                               clean[inside], atol=1e-3)
    assert np.isfinite(correct_reference_pixels(spoiled, amp33)[inside]).all()


def test_correction_rejects_bad_input():
    cube = np.zeros((3, N, N), dtype=np.float32)
    with pytest.raises(ValueError, match="amp33"):
        correct_reference_pixels(cube, np.zeros((3, N, 64), dtype=np.float32))
    with pytest.raises(ValueError, match="2 resultants"):
        correct_reference_pixels(cube[:1], np.zeros((1, N, 128), dtype=np.float32))


def test_refpix_wrapper_updates_exposure():
    resultants, amp33, white, rate, read_pattern = simulate(5)
    meta = {"exposure": {"read_pattern": read_pattern.read_pattern, "frame_time": FRAME_TIME}}
    pixeldq = np.zeros((N, N), dtype=np.uint32)
    exposure = RampExposure(data=resultants.copy(), amp33=amp33, meta=meta, pixeldq=pixeldq)
    out = refpix(exposure)
    assert out is exposure and out.data.dtype == np.float32
    assert out.meta["cal_step"]["refpix"] == "COMPLETE"
    np.testing.assert_allclose(out.data, correct_reference_pixels(resultants, amp33), atol=1e-4)
    assert ROW_PERIOD == 142


def test_residual_variance_estimate_matches_the_residual_left_in_the_pixels():
    """Noise-only frames: the estimate agrees with the common noise actually left after correction."""
    import dataclasses

    model = DetectorModel("WFI01", SMALL_SCIENCE_SIZE)
    read_pattern = ReadPattern(ma_table(4).as_list(), FRAME_TIME)
    n_reads = np.asarray(read_pattern.n_reads, dtype=np.float64)
    params = dataclasses.replace(model.correlated_noise, channel_1f=0.0)   # only what amp33 can see
    rng = np.random.default_rng(21)
    noise, amp33_noise = correlated_noise_resultants((N, N), read_pattern.n_reads, params, rng)
    white = rng.standard_normal(noise.shape).astype(np.float32)
    white *= (WHITE / np.sqrt(n_reads)).astype(np.float32)[:, None, None]
    corrected, residual = correct_reference_pixels(noise + white, 1000.0 + amp33_noise,
                                                   return_residual_variance=True)
    assert residual.shape == (len(n_reads),)
    left = (corrected - white)[(slice(None),) + SCIENCE].astype(np.float64)
    left -= left.mean(axis=0)                       # a constant per pixel changes no slope
    actual = left.var(axis=(1, 2)) * len(n_reads) / (len(n_reads) - 1)
    injected = noise[(slice(None),) + SCIENCE].var(axis=(1, 2))
    estimate_per_read, actual_per_read = np.mean(residual * n_reads), np.mean(actual * n_reads)
    assert actual_per_read < 0.6 * np.mean(injected * n_reads)         # the correction did remove most
    assert actual_per_read / 1.5 < estimate_per_read < 1.5 * actual_per_read, \
        f"estimate {estimate_per_read:.2f} vs actual {actual_per_read:.2f} DN² per read"
    # without correlated noise, nothing is left
    quiet = dataclasses.replace(params, common_1f=0.0, acn=0.0)
    noise, amp33_noise = correlated_noise_resultants((N, N), read_pattern.n_reads, quiet, rng)
    _, residual = correct_reference_pixels(noise + white, amp33_noise, return_residual_variance=True)
    assert np.mean(residual * n_reads) < 0.1 * actual_per_read


def test_refpix_wrapper_records_residual_variance():
    resultants, amp33, white, rate, read_pattern = simulate(6)
    meta = {"exposure": {"read_pattern": read_pattern.read_pattern, "frame_time": FRAME_TIME}}
    exposure = RampExposure(data=resultants.copy(), amp33=amp33, meta=meta,
                            pixeldq=np.zeros((N, N), dtype=np.uint32))
    refpix(exposure)
    _, residual = correct_reference_pixels(resultants, amp33, return_residual_variance=True)
    per_read = exposure.extra[RESIDUAL_VARIANCE_KEY]
    assert per_read == pytest.approx(np.mean(residual * np.asarray(read_pattern.n_reads)), rel=1e-6)
    assert 0.5 < per_read < 20.0                    # DN² per read, against ~25 DN² of white read noise
    assert any(line.startswith("refpix: residual") for line in exposure.meta["cal_logs"])


@pytest.mark.parametrize("correlated", [False, True])
def test_correction_never_adds_column_or_channel_power(correlated):
    """Channel means and column means of the rate image: no more power after the correction than
    before, on white noise alone and with correlated noise (8 channels, 128 science rows)."""
    read_pattern = ReadPattern(ma_table(4).as_list(), FRAME_TIME)
    shape = (128 + 2 * N_BORDER, 1024)
    rng = np.random.default_rng(77 + correlated)
    sigma = (WHITE / np.sqrt(read_pattern.n_reads)).astype(np.float32)[:, None, None]
    cube = rng.standard_normal((read_pattern.n_resultants,) + shape).astype(np.float32) * sigma
    amp33 = rng.standard_normal((read_pattern.n_resultants, shape[0], 128)).astype(np.float32) * sigma
    if correlated:
        noise, amp33_noise = correlated_noise_resultants(shape, read_pattern.n_reads, PARAMS, rng)
        cube += noise
        amp33 = amp33_noise
    corrected = correct_reference_pixels(cube, amp33)
    rows = slice(N_BORDER, -N_BORDER)
    before = ls_slope(cube, read_pattern)[rows]
    after = ls_slope(corrected, read_pattern)[rows]

    def channel_power(rate):
        return rate.reshape(rate.shape[0], -1, 128).mean(axis=(0, 2)).var()

    assert channel_power(after) <= 1.02 * channel_power(before), (channel_power(before), channel_power(after))
    assert after.mean(axis=0).var() <= 1.02 * before.mean(axis=0).var()
