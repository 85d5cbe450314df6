"""Truth comparisons on hand-built cases whose answers are known exactly."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table, vstack
from astropy.wcs import WCS

from romanflow import dq as flags
from romanflow.detector import PIXEL_SCALE, ReadPattern
from romanflow import validation
from romanflow.validation import (
    AB_ZEROPOINT_NJY,
    MATCH_RADIUS_ARCSEC,
    blended_stars,
    catalog_accuracy,
    colour_accuracy,
    covered_by,
    jump_completeness,
    jump_significance,
    match_sky,
    point_source_flux_column,
    rate_accuracy,
    rms_mas,
    sky_errors_mas,
)

RA0, DEC0 = 150.0, 30.0  # a field where cos(dec) = 0.866 matters
MAS = 1.0 / 3.6e6  # deg


def _offset(ra, dec, east_mas, north_mas):
    """Sky position moved by small offsets (mas) east (along the great circle) and north."""
    return ra + east_mas * MAS / np.cos(np.radians(dec)), dec + north_mas * MAS


def _alternating(n):
    """+1, -1, +1, ...: an even count has median 0, mean 0 and standard deviation exactly 1."""
    return np.where(np.arange(n) % 2 == 0, 1.0, -1.0)


# ---------------------------------------------------------------- rate_accuracy

DECADE_TRUTH = (0.5, 5.0, 50.0, 500.0)  # DN/s, one per default decade


def _rate_case(bias, z_width, shape=(100, 100)):
    """Truth in four bands of 25 rows, one per decade; rate = truth·(1+bias) + err·z_width·(±1)."""
    truth = np.repeat(np.array(DECADE_TRUTH), shape[0] // 4)[:, None] * np.ones(shape)
    err = 0.1 * np.sqrt(truth)
    sign = _alternating(truth.size).reshape(shape)
    rate = truth * (1 + bias) + err * z_width * sign
    return rate, err, np.zeros(shape, np.uint32), truth


def test_rate_accuracy_returns_an_injected_bias_and_error_width():
    rate, err, dq, truth = _rate_case(bias=2e-3, z_width=1.3)
    out = rate_accuracy(rate, err, dq, truth)
    assert out["pixels"] == 10000 and out["pixels_above_1dns"] == 7500
    # each decade is half +, half −: the median is exactly the injected bias
    assert out["bias_above_1dns"] == pytest.approx(2e-3, abs=1e-12)
    assert [d["range_dns"] for d in out["decades"]] == [(0.1, 1.0), (1.0, 10.0), (10.0, 100.0), (100.0, 1e5)]
    for d, level in zip(out["decades"], DECADE_TRUTH):
        assert d["pixels"] == 2500
        assert d["bias"] == pytest.approx(2e-3, abs=1e-12)
        # (rate − truth)/err = bias·truth/err ± 1.3: a constant shift plus a width of exactly 1.3
        assert d["z_width"] == pytest.approx(1.3, abs=1e-9), level


def test_rate_accuracy_leaves_out_flagged_and_unusable_pixels():
    rate, err, dq, truth = _rate_case(bias=0.0, z_width=1.0)
    # wild values on pixels that must not count: DO_NOT_USE, non-finite rate, zero or NaN error
    dq[0:2, :] |= flags.DO_NOT_USE
    rate[0:2, :] = 1e6
    rate[30:32, :] = np.nan
    err[60:62, :] = 0.0
    err[90:92, :] = np.nan
    rate[90:92, :] = 1e6
    out = rate_accuracy(rate, err, dq, truth)
    assert out["pixels"] == 10000 - 8 * 100
    assert out["pixels_above_1dns"] == 7500 - 6 * 100
    assert out["bias_above_1dns"] == pytest.approx(0.0, abs=1e-12)
    assert [d["pixels"] for d in out["decades"]] == [2300] * 4
    assert all(d["z_width"] == pytest.approx(1.0, abs=1e-9) for d in out["decades"])
    # JUMP_DET pixels count in the overall bias but not in the error-width test of their decade
    rate, err, dq, truth = _rate_case(bias=0.0, z_width=1.0)
    dq[25:27, :] |= flags.JUMP_DET
    out = rate_accuracy(rate, err, dq, truth)
    assert out["pixels_above_1dns"] == 7500
    assert [d["pixels"] for d in out["decades"]] == [2500, 2300, 2500, 2500]


def test_rate_accuracy_decade_edges_and_small_decades():
    rate, err, dq, truth = _rate_case(bias=1e-3, z_width=1.0)
    truth[:25] = 1.0  # exactly 1 DN/s: in the decade (0.1, 1] and not in the bias above 1 DN/s
    rate[:25] = 1.0 * (1 + 1e-3) + err[:25] * _alternating(2500).reshape(25, 100)
    out = rate_accuracy(rate, err, dq, truth)
    assert out["pixels_above_1dns"] == 7500
    assert out["decades"][0]["pixels"] == 2500
    # a decade with fewer than min_pixels usable pixels is left out
    assert [d["range_dns"][0] for d in rate_accuracy(rate, err, dq, truth, min_pixels=2501)["decades"]] == []
    dq[:24] |= flags.DO_NOT_USE
    assert [d["range_dns"][0] for d in rate_accuracy(rate, err, dq, truth)["decades"]] == [1.0, 10.0, 100.0]


def test_rate_accuracy_of_nothing_usable_is_nan_and_mismatched_shapes_raise():
    rate, err, dq, truth = _rate_case(bias=0.0, z_width=1.0)
    out = rate_accuracy(rate, err, dq | flags.DO_NOT_USE, truth)
    assert out["pixels"] == 0 and out["pixels_above_1dns"] == 0
    assert np.isnan(out["bias_above_1dns"]) and out["decades"] == []
    with pytest.raises(ValueError, match="shapes differ"):
        rate_accuracy(rate, err[:50], dq, truth)


# ---------------------------------------------------------------- jumps

PATTERN = ReadPattern([[1], [2, 3], [5, 6, 7], [10]], frame_time=3.0)


def _significance_from_covariance(first_read, amplitude, rate, read_noise):
    """Largest step / sigma of consecutive resultant differences, from the full resultant covariance."""
    step = np.diff([amplitude * np.mean(np.array(r) >= first_read) for r in PATTERN.read_pattern])
    d = np.diff(np.eye(PATTERN.n_resultants), axis=0)
    var = np.diag(d @ PATTERN.covariance(rate, read_noise) @ d.T)
    return np.max(step / np.sqrt(var))


def test_jump_significance_matches_the_resultant_covariance():
    first = np.array([1, 2, 3, 6, 10])
    amplitude = np.array([400.0, 400.0, 100.0, 250.0, 50.0])
    rate = np.array([2.0, 0.0, 10.0, 5.0, 1.0])
    noise = np.array([5.0, 5.0, 3.0, 8.0, 1.0])
    got = jump_significance(first, amplitude, rate, noise, PATTERN)
    want = [_significance_from_covariance(*args) for args in zip(first, amplitude, rate, noise)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == 0.0  # a hit in the first read only moves the intercept
    # a hit in read 2 puts all its charge in the step between resultants 1 and 2: 400 / sqrt(25 + 25/2)
    assert got[1] == pytest.approx(400.0 / np.sqrt(25.0 * 1.5), rel=1e-12)
    assert jump_significance([], [], [], [], PATTERN).shape == (0,)


def test_jump_completeness_counts_strong_hits_and_false_flags():
    shape = (20, 20)
    dq = np.zeros(shape, np.uint32)
    ones = np.ones(shape)
    rate, gain, read_noise = 1.0 * ones, 2.0 * ones, 5.0 * ones
    hits = pd.DataFrame({"x": [1, 2, 3, 4, 5], "y": [1, 1, 1, 1, 1], "read": [6, 6, 6, 1, 6],
                         "amplitude_e": [2000.0, 2000.0, 20.0, 2000.0, 2000.0]})
    dq[1, 1] |= flags.JUMP_DET  # strong hit, found
    # (1, 2): strong hit, missed; (1, 3): weak hit, not counted; (1, 4): read 1, significance 0
    dq[1, 5] |= flags.SATURATED | flags.JUMP_DET  # strong but saturated: not counted
    dq[10, 10:13] |= flags.JUMP_DET  # three false flags among clean pixels
    dq[15, :] |= flags.DO_NOT_USE | flags.JUMP_DET  # unusable row: not counted as false flags
    out = jump_completeness(dq, hits, rate, gain, read_noise, PATTERN)
    assert out["hits"] == 2
    assert out["completeness"] == 0.5
    assert out["false_rate"] == pytest.approx(3 / (400 - 5 - 20), rel=1e-12)
    none = jump_completeness(dq, hits.iloc[:0], rate, gain, read_noise, PATTERN)
    assert none["hits"] == 0 and np.isnan(none["completeness"])
    all_bad = jump_completeness(dq | flags.DO_NOT_USE, hits, rate, gain, read_noise, PATTERN)
    assert all_bad["hits"] == 0 and np.isnan(all_bad["false_rate"])


# ---------------------------------------------------------------- match_sky

def _hand_placed():
    """Truth positions and measured positions with known offsets (mas) from them.

    0: 30 E, 40 N of truth 0 (50 mas); 1: 200 mas from truth 1 (beyond the radius);
    2: 60 mas N of truth 2; 3: between truths 3 and 4, 30 mas from 3 and 50 mas from 4;
    truth 5 has no measured partner; 4: NaN position.
    """
    truth_ra = RA0 + np.array([0.0, 10.0, 0.0, 30.0, 30.0, 40.0]) / 3600.0 / np.cos(np.radians(DEC0))
    truth_dec = DEC0 + np.array([0.0, 0.0, 20.0, 0.0, 0.0, 0.0]) / 3600.0
    truth_ra[4], truth_dec[4] = _offset(truth_ra[3], truth_dec[3], 80.0, 0.0)
    offsets = [(0, 30.0, 40.0), (1, 200.0, 0.0), (2, 0.0, 60.0), (3, 30.0, 0.0)]
    ra, dec = zip(*[_offset(truth_ra[k], truth_dec[k], e, n) for k, e, n in offsets])
    return np.array(ra + (np.nan,)), np.array(dec + (DEC0,)), truth_ra, truth_dec


def test_match_sky_gives_exactly_the_expected_pairs():
    ra, dec, tra, tdec = _hand_placed()
    i, j, sep = match_sky(ra, dec, tra, tdec)
    assert i.tolist() == [0, 2, 3] and j.tolist() == [0, 2, 3]
    # separations to 1 µas (second-order terms of 0.1" offsets are ~1e-8 mas)
    np.testing.assert_allclose(sep * 1e3, [50.0, 60.0, 30.0], atol=1e-3)
    assert i.dtype.kind == "i" and j.dtype.kind == "i"
    # the other way round truths 3 and 4 both take measured source 3 as their nearest; one to one,
    # only the closer truth 3 does
    i2, j2, _ = match_sky(tra, tdec, ra, dec)
    assert list(zip(i2.tolist(), j2.tolist())) == [(0, 0), (2, 2), (3, 3), (4, 3)]
    i2, j2, _ = match_sky(tra, tdec, ra, dec, one_to_one=True)
    assert list(zip(i2.tolist(), j2.tolist())) == [(0, 0), (2, 2), (3, 3)]


def test_match_sky_radius_default_and_edges():
    assert inspect.signature(match_sky).parameters["radius_arcsec"].default == MATCH_RADIUS_ARCSEC
    tra, tdec = np.array([RA0]), np.array([DEC0])
    ra, dec = _offset(np.full(2, RA0), np.full(2, DEC0), np.array([0.0, 0.0]),
                      np.array([0.99, 1.01]) * MATCH_RADIUS_ARCSEC * 1e3)
    assert match_sky(ra, dec, tra, tdec)[0].tolist() == [0]
    assert match_sky(ra, dec, tra, tdec, 2 * MATCH_RADIUS_ARCSEC)[0].tolist() == [0, 1]
    # across RA = 0: 359.99999° and 0.00001° at the equator are 72 mas apart
    i, j, sep = match_sky([359.99999], [0.0], [0.00001], [0.0])
    assert i.tolist() == [0] and sep[0] * 1e3 == pytest.approx(72.0, abs=1e-3)


def test_match_sky_nearest_and_one_to_one():
    tra, tdec = np.array([RA0, RA0]), np.array([DEC0, DEC0 + 90.0 * MAS])  # two truths 90 mas apart
    # both measured sources are nearest to truth 0: 20 mas N of it, and 40 mas N of it (50 mas from truth 1)
    ra, dec = np.array([RA0, RA0]), np.array([DEC0 + 20.0 * MAS, DEC0 + 40.0 * MAS])
    i, j, sep = match_sky(ra, dec, tra, tdec)
    assert i.tolist() == [0, 1] and j.tolist() == [0, 0]  # nearest neighbour: truth 0 twice
    i, j, sep = match_sky(ra, dec, tra, tdec, one_to_one=True)
    assert i.tolist() == [0, 1] and j.tolist() == [0, 1]  # closest pair first, the other takes truth 1
    np.testing.assert_allclose(sep * 1e3, [20.0, 50.0], atol=1e-3)
    # with truth 1 beyond the radius (160 mas) the second gets nothing rather than a truth already taken
    tdec_far = np.array([DEC0, DEC0 + 200.0 * MAS])
    i, j, _ = match_sky(ra, dec, tra, tdec_far, one_to_one=True)
    assert i.tolist() == [0] and j.tolist() == [0]
    # a cone search: one position in list 2 takes every list-1 entry inside the radius
    i, j, _ = match_sky(ra, dec, [RA0], [DEC0], 0.05)
    assert i.tolist() == [0, 1] and j.tolist() == [0, 0]


def test_match_sky_empty_nan_and_bad_lengths():
    for i, j, sep in (match_sky([], [], [RA0], [DEC0]), match_sky([RA0], [DEC0], [], []),
                      match_sky([np.nan], [DEC0], [RA0], [DEC0]), match_sky([RA0], [DEC0], [np.nan], [np.nan]),
                      match_sky([], [], [], [], one_to_one=True)):
        assert len(i) == len(j) == len(sep) == 0 and i.dtype.kind == "i"
    # a non-finite entry is skipped and the indices still refer to the lists as given
    i, j, _ = match_sky([np.nan, RA0], [DEC0, DEC0], [RA0, np.inf, RA0 + 1.0], [DEC0, DEC0, DEC0], one_to_one=True)
    assert i.tolist() == [1] and j.tolist() == [0]
    with pytest.raises(ValueError, match="lengths differ"):
        match_sky([RA0, RA0], [DEC0], [RA0], [DEC0])


def test_every_truth_match_defaults_to_the_one_radius():
    for function, name in ((match_sky, "radius_arcsec"), (catalog_accuracy, "match_radius_arcsec"),
                           (colour_accuracy, "match_radius_arcsec"), (sky_errors_mas, "match_radius_arcsec")):
        assert inspect.signature(function).parameters[name].default == MATCH_RADIUS_ARCSEC, function.__name__
    assert validation.MATCH_RADIUS_ARCSEC == 0.1


# ---------------------------------------------------------------- catalogs

def _njy(mag):
    return 10 ** (-0.4 * (np.asarray(mag) - AB_ZEROPOINT_NJY))


def _star_grid(n, mag=18.0, spacing_arcsec=5.0, **mags):
    """n true stars 5" apart in RA, all of magnitude ``mag`` in F158 (and ``mags`` in other bands)."""
    ra, dec = _offset(np.full(n, RA0), np.full(n, DEC0), np.arange(n) * spacing_arcsec * 1e3, np.zeros(n))
    return pd.DataFrame({"ra": ra, "dec": dec, "type": "star", "mag_F158": np.full(n, mag),
                         **{f"mag_{b}": np.full(n, m) for b, m in mags.items()}})


def _catalog(truth, flux, err, east_mas=0.0, north_mas=0.0, band="f158"):
    ra, dec = _offset(truth["ra"].to_numpy(), truth["dec"].to_numpy(), east_mas, north_mas)
    return Table({"ra": ra, "dec": dec, f"psf_{band}_flux": flux, f"psf_{band}_flux_err": err})


def test_catalog_accuracy_returns_injected_bias_width_and_position_error():
    truth = _star_grid(10)
    true = _njy(truth["mag_F158"].to_numpy())
    err = true / 200.0  # S/N 200
    flux = true * (1 + 0.004) + 1.5 * err * _alternating(10)
    # every star measured 3 mas east and 4 mas north: 5 mas off
    acc = catalog_accuracy(_catalog(truth, flux, err, 3.0, 4.0), truth, "F158")
    assert acc["flux_column"] == "psf_f158_flux"
    assert acc["stars_matched"] == 10 and acc["n_bright"] == 10 and acc["n_snr20"] == 10
    assert acc["photometric_bias"] == pytest.approx(0.004, abs=1e-12)
    assert acc["photometric_scatter"] == pytest.approx(1.5 / 200.0, rel=1e-9)
    # (flux − true)/err = 0.004·200 ± 1.5: std exactly 1.5
    assert acc["normalized_residual_std"] == pytest.approx(1.5, rel=1e-9)
    assert acc["normalized_residual_std_snr20"] == pytest.approx(1.5, rel=1e-9)
    assert acc["astrometric_rms_mas"] == pytest.approx(5.0, abs=1e-4)
    assert acc["n_blended"] == 0


def test_catalog_accuracy_leaves_out_blends_unmatched_and_split_sources():
    truth = _star_grid(6)
    true = _njy(truth["mag_F158"].to_numpy())
    err = true / 200.0
    flux = true * 1.01
    cat = _catalog(truth, flux, err)
    # star 5 has a companion 0.3" away, 2 mag fainter (16% of its flux): blended, measured 30% high
    companion = _star_grid(1, mag=20.0)
    companion["ra"], companion["dec"] = _offset(truth["ra"].iloc[5], truth["dec"].iloc[5], 0.0, 300.0)
    companion["type"] = "sersic"
    cat["psf_f158_flux"][5] = true[5] * 1.3
    # a catalog source 0.2" from star 0 matches nothing; a split piece 30 mas from star 1 (its
    # nearest true star, but taken by the 0-mas source) is left out rather than counted twice
    extra = _catalog(truth.iloc[[0, 1]], true[:2] * 0.5, err[:2], 0.0, np.array([200.0, 30.0]))
    acc = catalog_accuracy(vstack([cat, extra]),
                           pd.concat([truth, companion], ignore_index=True), "F158")
    assert acc["stars_matched"] == 6
    assert acc["n_blended"] == 1 and acc["n_bright"] == 5
    assert acc["photometric_bias"] == pytest.approx(0.01, abs=1e-12)
    assert acc["photometric_scatter"] == pytest.approx(0.0, abs=1e-12)
    assert acc["astrometric_rms_mas"] == pytest.approx(0.0, abs=1e-4)


def test_catalog_accuracy_completeness_at_snr10():
    # errors of 1/10 of a 25th-magnitude flux: S/N 10 at AB 25. 4 bright stars, 8 faint ones at
    # 2.5× that flux (3 of them not catalogued) and 3 at 1.1× it (S/N 11) that set the S/N-10 flux
    bright, faint = _star_grid(4, mag=18.0), _star_grid(8, mag=24.0)
    faint["dec"] += 100.0 / 3600.0
    near10 = _star_grid(3, mag=24.9)
    near10["dec"] -= 100.0 / 3600.0
    truth = pd.concat([bright, faint, near10], ignore_index=True)
    flux10 = _njy(25.0)
    found = pd.concat([bright, faint.iloc[3:], near10])
    true = _njy(found["mag_F158"].to_numpy())
    acc = catalog_accuracy(_catalog(found, true, np.full(len(found), flux10 / 10.0)), truth, "F158")
    assert acc["n_snr10"] == 3
    # stars at or above the S/N-10 flux: all 15; found: 12
    assert acc["stars_above_snr10"] == 15
    assert acc["completeness_snr10"] == pytest.approx(12 / 15, abs=1e-12)


def test_catalog_accuracy_of_an_empty_catalog_is_nan():
    truth = _star_grid(5)
    empty = _catalog(truth.iloc[:0], np.zeros(0), np.zeros(0))
    acc = catalog_accuracy(empty, truth, "F158")
    assert acc["stars_matched"] == 0 and acc["n_bright"] == 0 and acc["n_blended"] == 0
    for key in ("photometric_bias", "photometric_scatter", "normalized_residual_std", "astrometric_rms_mas",
                "normalized_residual_std_snr20", "completeness_snr10"):
        assert np.isnan(acc[key]), key
    # fewer than 3 stars above S/N 50: NaN, not a figure from one or two stars
    two = _catalog(truth.iloc[:2], _njy([18.0, 18.0]), _njy([18.0, 18.0]) / 200)
    assert np.isnan(catalog_accuracy(two, truth, "F158")["photometric_bias"])


def test_point_source_flux_column_prefers_finite_exposure_fits():
    cat = Table({"psf_exp_f158_flux": [np.nan, np.nan], "psf_f158_flux": [1.0, 2.0]})
    assert point_source_flux_column(cat, "F158") == "psf_f158_flux"
    cat["psf_exp_f158_flux"][1] = 3.0
    assert point_source_flux_column(cat, "F158") == "psf_exp_f158_flux"
    assert point_source_flux_column(Table({"psf_f106_flux": [1.0]}), "f106") == "psf_f106_flux"


def test_colour_accuracy_returns_an_injected_colour_offset():
    truth = _star_grid(8, mag=18.0, F106=18.4)
    f158 = _njy(18.0) * np.ones(8)
    # F106 measured 0.02 mag faint, ±0.005 mag: colour F106 − F158 biased by +0.02 mag, scatter 0.005 mag
    f106 = _njy(18.4 + 0.02 + 0.005 * _alternating(8))
    cat = _catalog(truth, f158, f158 / 200.0)
    cat["psf_f106_flux"], cat["psf_f106_flux_err"] = f106, f106 / 200.0
    out = colour_accuracy(cat, truth, "F106", "F158")
    assert out["n_stars"] == 8
    assert out["colour_bias"] == pytest.approx(0.02, abs=1e-9)
    assert out["colour_scatter"] == pytest.approx(0.005, abs=1e-9)
    # mag error of each band: 1.0857/200; of the colour: that × √2
    assert out["colour_residual_std"] == pytest.approx(0.005 / (2.5 / np.log(10) / 200 * np.sqrt(2)), rel=1e-9)
    # stars at S/N 40 in one band are left out; fewer than 3 left: NaN
    cat["psf_f106_flux_err"][2:] = f106[2:] / 40.0
    out = colour_accuracy(cat, truth, "F106", "F158")
    assert out["n_stars"] == 2 and np.isnan(out["colour_bias"]) and np.isnan(out["colour_scatter"])


def test_blended_stars_by_distance_and_flux_fraction():
    star = _star_grid(1, mag=20.0)
    cases = {  # companion (mas north, mag) -> blended?
        (300.0, 22.0): True,  # 16% of the star's flux
        (300.0, 24.0): False,  # 2.5%, under the 5% default
        (600.0, 18.0): True,  # 6.3 times the star, in the wings: above 0.05 (0.6/0.5)^2.5 = 0.079
        (1500.0, 18.0): True,  # above 0.05 (1.5/0.5)^2.5 = 0.78
        (1500.0, 21.0): False,  # 0.40 times the star
        (2500.0, 10.0): False,  # outside 2"
    }
    for (north, mag), blended in cases.items():
        other = _star_grid(1, mag=mag)
        other["ra"], other["dec"] = _offset(star["ra"].iloc[0], star["dec"].iloc[0], 0.0, north)
        truth = pd.concat([star, other], ignore_index=True)
        assert blended_stars(truth, truth.iloc[:1], "F158").tolist() == [blended], (north, mag)
    # across RA = 0 at the equator: 359.99995° and 0.00005° are 0.36" apart
    truth = pd.DataFrame({"ra": [359.99995, 0.00005], "dec": [0.0, 0.0], "mag_F158": [20.0, 20.0]})
    assert blended_stars(truth, truth, "F158").tolist() == [True, True]
    assert blended_stars(truth.iloc[:1], truth.iloc[:1], "F158").tolist() == [False]


# ---------------------------------------------------------------- images and registration

class _Image:
    def __init__(self, data, err, wcs):
        self.data, self.err, self.wcs = data, err, wcs


def _tan_wcs(shape=(64, 64), ra=RA0, dec=DEC0):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    w.wcs.cdelt = [-PIXEL_SCALE / 3600.0, PIXEL_SCALE / 3600.0]
    return w


def test_covered_by_uses_the_nearest_pixel_and_the_margin():
    shape = (64, 64)
    w = _tan_wcs(shape)
    data, err = np.ones(shape), np.ones(shape)
    ra, dec = w.pixel_to_world_values(np.array([20.6, 40.0, 5.0, 40.0]), np.array([30.2, 40.0, 30.0, 20.0]))
    truth = pd.DataFrame({"ra": ra, "dec": dec})
    # source 0 lies in pixel (x=21, y=30), whose centre is 0.4 pixel away; pixel 20 is bad
    data[30, 20] = np.nan
    err[20, 40] = 0.0  # source 3's pixel has no error
    assert covered_by(_Image(data, err, w), truth).tolist() == [True, True, False, False]  # 2: within 15 px
    data[30, 21] = np.nan
    assert covered_by(_Image(data, err, w), truth).tolist() == [False, True, False, False]
    assert covered_by(_Image(data, err, w), truth, margin_pix=3.0).tolist() == [False, True, True, False]


class _LinearWcs:
    """x, y (pixels) -> ra, dec (deg): PIXEL_SCALE per pixel east (along the great circle) and north."""

    def __init__(self, ra0, dec0):
        self.ra0, self.dec0 = ra0, dec0

    def __call__(self, x, y, with_bounding_box=True):
        dec = self.dec0 + np.asarray(y) * PIXEL_SCALE / 3600.0
        return (self.ra0 + np.asarray(x) * PIXEL_SCALE / 3600.0 / np.cos(np.radians(self.dec0))) % 360.0, dec


def test_sky_errors_mas_of_known_pixel_offsets():
    # RA = 0 lies 0.005 pixel east of star 0, between its true and its measured position
    wcs = _LinearWcs(360.0 - 0.005 * PIXEL_SCALE / 3600.0 / np.cos(np.radians(DEC0)), DEC0)
    tx, ty = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 50.0]), np.zeros(6)
    ra, dec = wcs(tx, ty)
    truth = pd.DataFrame({"x": tx, "y": ty, "ra": ra, "dec": dec, "type": ["star"] * 5 + ["sersic"]})
    dx = np.array([0.01, -0.02, 0.0, 0.5, 1.0, 0.0])  # pixels
    catalog = Table({"x": tx + dx, "y": ty, "snr": [200.0, 200.0, 50.0, 200.0, 200.0, 200.0],
                     "flags": [0, 0, 0, 0, 0, 0]})
    errors = sky_errors_mas(_Image(None, None, wcs), catalog, truth)
    # source 2 is below S/N 100, source 4 is 1 pixel (0.11") from its star, source 5 is a galaxy
    np.testing.assert_allclose(errors, [[1.1, 0.0], [-2.2, 0.0], [55.0, 0.0]], atol=1e-5)
    catalog["flags"][0] = 1
    assert len(sky_errors_mas(_Image(None, None, wcs), catalog, truth)) == 2
    assert sky_errors_mas(_Image(None, None, wcs), catalog[:0], truth).shape == (0, 2)
    assert rms_mas(errors) == pytest.approx(np.sqrt((1.1**2 + 2.2**2 + 55.0**2) / 3), rel=1e-9)
    assert rms_mas(np.array([[3.0, 4.0], [0.0, 0.0]])) == pytest.approx(np.sqrt(12.5), rel=1e-12)
    assert np.isnan(rms_mas(np.zeros((0, 2))))
