"""Detection thresholds on images with correlated noise, and the coverage edge."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from romanflow.catalog import detect
from romanflow.catalog.source_catalog import BandImage, make_catalog
from romanflow.catalog.synthetic import random_scene, render, tan_wcs
from romanflow.errors import RomanflowError

SHAPE = (512, 512)
SCALE = 0.055
FWHM = 0.15
FWHM_PIX = FWHM / SCALE
SIGMA = 1.0  # nJy per pixel: per-pixel noise and reported error


def correlated_noise(shape, sigma, seed):
    """White noise summed over a 2x2 box and halved: per-pixel std ``sigma``, neighbours correlated by 1/2."""
    white = np.random.default_rng(seed).normal(0.0, sigma, (shape[0] + 1, shape[1] + 1))
    return ((white[:-1, :-1] + white[1:, :-1] + white[:-1, 1:] + white[1:, 1:]) / 2).astype(np.float32)


def expected_noise_scale(fwhm_pix):
    """Exact actual / propagated noise of the Gaussian-smoothed 2x2-box noise."""
    kernel = detect.gaussian_kernel(fwhm_pix)
    effective = ndimage.convolve(np.pad(kernel, 1), np.full((2, 2), 0.5), mode="constant")
    return float(np.sqrt((effective**2).sum() / (kernel**2).sum()))


def test_noise_scale_is_one_for_white_noise_and_measures_correlations():
    err = np.full(SHAPE, SIGMA, np.float32)
    white = np.random.default_rng(1).normal(0.0, SIGMA, SHAPE).astype(np.float32)
    _, _, scale_white = detect.segment_sources(white, err, kernel_fwhm_pix=FWHM_PIX)
    assert abs(scale_white - 1.0) < 0.03

    noise = correlated_noise(SHAPE, SIGMA, seed=2)
    assert abs(np.std(noise) - SIGMA) < 0.01  # the reported per-pixel error is right
    _, _, scale = detect.segment_sources(noise, err, kernel_fwhm_pix=FWHM_PIX)
    expected = expected_noise_scale(FWHM_PIX)
    assert expected > 1.7
    assert abs(scale / expected - 1) < 0.03


def test_pure_correlated_noise_gives_no_detections_only_with_the_calibrated_threshold():
    err = np.full(SHAPE, SIGMA, np.float32)
    noise = correlated_noise(SHAPE, SIGMA, seed=3)
    segm, _, _ = detect.segment_sources(noise, err, kernel_fwhm_pix=FWHM_PIX, snr_threshold=5.0)
    assert segm is None or segm.n_labels <= 1
    # The propagated noise alone (independent pixels assumed) puts the threshold far too low.
    naive, _, _ = detect.segment_sources(noise, err, kernel_fwhm_pix=FWHM_PIX, snr_threshold=5.0, noise_scale=1.0)
    assert naive is not None and naive.n_labels > 20


@pytest.fixture(scope="module")
def correlated_catalog():
    scene = random_scene(SHAPE, 160, 0, flux_range_njy=(20.0, 3000.0), min_separation=16.0, seed=31)
    _, _, model = render(scene, SHAPE, psf_fwhm_arcsec=FWHM, sky_sigma_njy=SIGMA, seed=32)
    image = model + correlated_noise(SHAPE, SIGMA, seed=33)
    err = np.full(SHAPE, SIGMA, np.float32)
    wcs = tan_wcs(SHAPE, SCALE)
    cat = make_catalog(BandImage("F158", image, err, wcs, 1.0, psf_fwhm_arcsec=FWHM), psf_photometry=False)
    return scene, cat


def test_correlated_noise_spurious_fraction_and_completeness(correlated_catalog):
    scene, cat = correlated_catalog
    xy = np.column_stack([np.asarray(cat["x_centroid"], float), np.asarray(cat["y_centroid"], float)])
    dist, _ = cKDTree(np.column_stack([scene.x, scene.y])).query(xy)
    spurious = dist > 2.0
    assert len(cat) > 50
    assert spurious.mean() <= 0.02
    # True matched-filter S/N of a point source under the correlated noise.
    sigma_pix = FWHM_PIX / 2.3548
    true_snr = scene.flux / (SIGMA * np.sqrt(4 * np.pi) * sigma_pix * expected_noise_scale(FWHM_PIX))
    found = cKDTree(xy).query(np.column_stack([scene.x, scene.y]))[0] < 2.0
    above = true_snr >= 10
    assert above.sum() > 40
    assert found[above].mean() >= 0.9
    assert abs(cat.meta["detection"]["noise_scale"] / expected_noise_scale(FWHM_PIX) - 1) < 0.05


def test_nothing_detected_on_or_beyond_a_ragged_coverage_edge():
    rng = np.random.default_rng(41)
    image = rng.normal(0.0, SIGMA, SHAPE).astype(np.float32)
    err = np.full(SHAPE, SIGMA, np.float32)
    yy, xx = np.indices(SHAPE)
    edge = 250 + 20 * np.sin(yy / 15.0) + rng.integers(-3, 4, SHAPE)
    uncovered = xx > edge
    # Bright spots straddling the edge and a step in the covered data next to it.
    for y0 in range(20, SHAPE[0], 40):
        x0 = int(250 + 20 * np.sin(y0 / 15.0))
        image[y0 - 2 : y0 + 3, x0 - 2 : x0 + 3] += 50.0
        image[y0 - 2 : y0 + 3, x0 - 62 : x0 - 57] += 50.0  # well inside: must be found
    image[uncovered] = np.nan
    err[uncovered] = np.inf
    segm, _, _ = detect.segment_sources(image, err, kernel_fwhm_pix=FWHM_PIX, snr_threshold=5.0)
    distance = ndimage.distance_transform_edt(~uncovered)
    margin = detect.gaussian_kernel(FWHM_PIX).shape[0] // 2 + int(np.ceil(FWHM_PIX))
    assert segm is not None
    assert distance[segm.data > 0].min() > margin
    assert segm.n_labels == len(range(20, SHAPE[0], 40))


def test_background_with_a_masked_row_in_every_box():
    """Every seventh row masked (14%, more than photutils' default 10% per box): still a background."""
    rng = np.random.default_rng(0)
    data = rng.normal(1.0, 0.1, (256, 256))
    mask = np.zeros(data.shape, bool)
    mask[::7] = True
    data[mask] = np.nan
    background, rms = detect.estimate_background(data, mask=mask)
    assert abs(float(np.median(background)) - 1.0) < 0.01 and abs(float(np.median(rms)) - 0.1) < 0.01
    with pytest.raises(RomanflowError, match="too few usable pixels"):
        detect.estimate_background(data, mask=np.ones(data.shape, bool))


@pytest.mark.parametrize("option,value", [("snr_threshold", -3.0), ("snr_threshold", 0.0), ("n_pixels", 0)])
def test_make_catalog_rejects_unusable_options(option, value):
    from romanflow.errors import ParameterError

    image = BandImage(band="F158", data=np.zeros((64, 64), np.float32), err=np.ones((64, 64), np.float32),
                      wcs=tan_wcs((64, 64)), njy_per_pixel=1.0, psf_fwhm_arcsec=0.15)
    with pytest.raises(ParameterError, match=option):
        make_catalog(image, **{option: value})
