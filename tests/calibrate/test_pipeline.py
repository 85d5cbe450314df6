"""L1 -> L2 against the simulator's truth, at small size."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from romanflow import dq
from romanflow.calibrate import CalibrationOptions, calibrate_exposure, resolve_references
from romanflow.detector import N_BORDER, SMALL_SCIENCE_SIZE
from romanflow.refdata import ReferenceStore
from romanflow.simulate import random_scene, simulate_detector
from romanflow import geometry

SIZE = SMALL_SCIENCE_SIZE
S = slice(N_BORDER, -N_BORDER)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ReferenceStore(tmp_path_factory.mktemp("refs"), science_size=SIZE)


@pytest.fixture(scope="module")
def simulation():
    """A dense field of bright galaxies and stars so that many pixels span 1-5000 DN/s."""
    pointing = geometry.pointing_for(270.0, 66.0, 0.0)
    centre = (SIZE - 1) / 2.0
    ra, dec = geometry.DetectorProjection("WFI01", pointing, SIZE).pixel_to_world(np.array([centre]), np.array([centre]))
    scene = random_scene(float(ra[0]), float(dec[0]), 0.006, n_sources=1500, faint_limit=21.0, star_fraction=0.7,
                         seed=3)
    return simulate_detector(scene, "WFI01", "F158", ma_table_number=4, pointing=pointing,
                             science_size=SIZE, seed=3)


@pytest.fixture(scope="module", params=["likely", "casertano"])
def calibrated(request, simulation, store):
    exposure = copy.deepcopy(simulation.exposure)
    options = CalibrationOptions(ramp_method=request.param, context=store)
    refs = resolve_references(exposure.meta, SIZE, options)
    image, timings = calibrate_exposure(exposure, options, refs)
    return request.param, image


def _usable(image):
    return ((image.dq & dq.DO_NOT_USE) == 0) & np.isfinite(image.data)


def test_rate_bias_below_a_tenth_of_a_percent(calibrated, simulation):
    method, image = calibrated
    truth = simulation.rate_dn
    bright = _usable(image) & (truth > 1.0)
    assert bright.sum() > 3000
    bias = np.median((image.data[bright] - truth[bright]) / truth[bright])
    assert abs(bias) < 1e-3, f"{method}: median relative bias {bias:.2e}"


@pytest.mark.parametrize("decade", [(0.1, 1.0), (1.0, 10.0), (10.0, 100.0), (100.0, 1e4)])
def test_errors_are_honest_in_each_flux_decade(calibrated, simulation, decade):
    method, image = calibrated
    truth = simulation.rate_dn
    lo, hi = decade
    clean = _usable(image) & ((image.dq & dq.JUMP_DET) == 0) & (truth > lo) & (truth <= hi)
    assert clean.sum() > 400
    z = (image.data[clean] - truth[clean]) / image.err[clean].astype(np.float64)
    # robust width (the normalised MAD) so that a rare outlier does not decide
    width = 1.4826 * np.median(np.abs(z - np.median(z)))
    assert abs(width - 1.0) < 0.05, f"{method} {decade}: std of normalised residuals {width:.3f}"


def jump_significance(first_read, amplitude_dn, rate_dn, read_noise, read_pattern):
    """Largest step a hit makes in consecutive resultant differences, in units of their noise.

    A hit first seen in read ``first_read`` (1-based, as the truth table records it) adds to that
    read and every later one; a resultant sees the fraction of its reads that include the hit.
    A hit in read 1 only changes the intercept and cannot be seen.
    """
    reads = [np.asarray(r) for r in read_pattern.read_pattern]
    t, tau, n = read_pattern.mean_times, read_pattern.tau, read_pattern.n_reads
    fraction = np.array([[np.mean(rr >= k) for rr in reads] for k in first_read])
    step = np.diff(fraction, axis=1) * amplitude_dn[:, None]
    var = (read_noise[:, None] ** 2 * (1 / n[:-1] + 1 / n[1:])
           + rate_dn[:, None] * (tau[:-1] + tau[1:] - 2 * t[:-1]))
    return np.max(step / np.sqrt(var), axis=1)


def test_cosmic_rays_are_flagged_and_clean_pixels_are_not(calibrated, simulation):
    from romanflow.detector_model import DetectorModel

    method, image = calibrated
    crs = simulation.cosmic_rays
    model = DetectorModel("WFI01", SIZE)
    x, y = crs["x"].to_numpy(int), crs["y"].to_numpy(int)
    gain = model.gain[S, S][y, x]
    rate = simulation.rate_dn[y, x] + model.dark_rate[S, S][y, x]
    significance = jump_significance(crs["read"].to_numpy(int), crs["amplitude_e"].to_numpy() / gain, rate,
                                     model.read_noise[S, S][y, x], simulation.exposure.read_pattern)
    usable = (image.dq[y, x] & (dq.DO_NOT_USE | dq.SATURATED)) == 0
    strong = (significance > 10) & usable
    assert strong.sum() > 20
    flagged = (image.dq[y, x] & dq.JUMP_DET) != 0
    assert flagged[strong].mean() >= 0.98, f"{method}: completeness {flagged[strong].mean():.3f}"
    hit = np.zeros(image.dq.shape, bool)
    hit[y, x] = True
    clean = ~hit & ((image.dq & dq.DO_NOT_USE) == 0)
    false_rate = ((image.dq[clean] & dq.JUMP_DET) != 0).mean()
    assert false_rate < 1e-3, f"{method}: false jump rate {false_rate:.2e}"


def test_product_records_steps_and_references(calibrated):
    method, image = calibrated
    cal_step = image.meta["cal_step"]
    for step in ("dq_init", "saturation", "refpix", "linearity", "ramp_fit", "dark", "assign_wcs",
                 "flat_field", "photom"):
        assert cal_step[step] == "COMPLETE"
    assert image.meta["ref_file"]["dark"].endswith(".asdf")
    assert image.meta["photometry"]["conversion_megajanskys"] > 0
    assert image.wcs is not None
