"""Flux errors on images with correlated pixels, and the PSF model's orientation on a resampled grid."""

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy import ndimage
from scipy.spatial import cKDTree

from romanflow.catalog import detect
from romanflow.catalog.photometry import resampled_effective_psf
from romanflow.catalog.products import detector_to_image_matrix
from romanflow.catalog.source_catalog import BandImage, make_catalog
from romanflow.catalog.synthetic import random_scene, render, tan_wcs

SHAPE = (400, 400)
SCALE = 0.055
FWHM = 0.15
SIGMA = 1.0  # nJy per pixel: per-pixel noise and reported error


def correlated_noise(shape, sigma, seed):
    """White noise summed over a 2x2 box and halved: per-pixel std ``sigma``, neighbours correlated by 1/2."""
    white = np.random.default_rng(seed).normal(0.0, sigma, (shape[0] + 1, shape[1] + 1))
    return ((white[:-1, :-1] + white[1:, :-1] + white[:-1, 1:] + white[1:, 1:]) / 2).astype(np.float32)


def exact_scale(kernel):
    """Actual / propagated noise of 2x2-box noise correlated with ``kernel``."""
    effective = ndimage.convolve(np.pad(kernel, 1), np.full((2, 2), 0.5), mode="constant")
    return float(np.sqrt((effective**2).sum() / (kernel**2).sum()))


def test_kernel_noise_scale_for_white_and_correlated_noise():
    err = np.full(SHAPE, SIGMA, np.float32)
    white = np.random.default_rng(5).normal(0.0, SIGMA, SHAPE).astype(np.float32)
    noise = correlated_noise(SHAPE, SIGMA, seed=6)
    for kernel in (detect.gaussian_kernel(FWHM / SCALE), detect.disk_kernel(2.0), detect.disk_kernel(7.3)):
        assert abs(detect.kernel_noise_scale(white, err, kernel) - 1.0) < 0.05
        expected = exact_scale(kernel)
        assert expected > 1.5
        assert abs(detect.kernel_noise_scale(noise, err, kernel) / expected - 1) < 0.05
    # the disk kernel's sum is the aperture's area
    assert abs(detect.disk_kernel(7.3).sum() / (np.pi * 7.3**2) - 1) < 1e-3


@pytest.fixture(scope="module")
def correlated_stars():
    scene = random_scene(SHAPE, 90, 0, flux_range_njy=(60.0, 3000.0), min_separation=18.0, seed=51)
    _, _, model = render(scene, SHAPE, psf_fwhm_arcsec=FWHM, sky_sigma_njy=SIGMA, seed=52)
    image = model + correlated_noise(SHAPE, SIGMA, seed=53)
    err = np.full(SHAPE, SIGMA, np.float32)
    cat = make_catalog(BandImage("F158", image, err, tan_wcs(SHAPE, SCALE), 1.0, psf_fwhm_arcsec=FWHM))
    return scene, cat


def test_psf_and_aperture_errors_are_honest_on_correlated_pixels(correlated_stars):
    scene, cat = correlated_stars
    xy = np.column_stack([np.asarray(cat["x_centroid"], float), np.asarray(cat["y_centroid"], float)])
    dist, idx = cKDTree(xy).query(np.column_stack([scene.x, scene.y]))
    found = dist < 1.5
    assert found.sum() > 60
    truth = np.asarray(scene.flux)[found]
    scales = cat.meta["error_scale"]["f158"]
    assert scales["psf"] > 1.5 and min(scales["aperture"]) > 1.5
    psf = np.asarray(cat["psf_f158_flux"].value, float)[idx[found]]
    psf_err = np.asarray(cat["psf_f158_flux_err"].value, float)[idx[found]]
    assert abs(np.std((psf - truth) / psf_err) - 1.0) < 0.15
    sigma = FWHM / 2.3548
    for name, radius in (("aper02", 0.2), ("aper04", 0.4)):
        fraction = 1 - np.exp(-(radius**2) / (2 * sigma**2))
        aper = np.asarray(cat[f"{name}_f158_flux"].value, float)[idx[found]]
        aper_err = np.asarray(cat[f"{name}_f158_flux_err"].value, float)[idx[found]]
        assert abs(np.std((aper - fraction * truth) / aper_err) - 1.0) < 0.15


def _elongated_epsf(n=161, oversample=8, native=0.11):
    """A native effective PSF elongated along the detector x axis, off-centre features to show parity."""
    grid = (np.arange(n) - (n - 1) / 2) * native / oversample
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    psf = np.exp(-0.5 * ((xx / 0.12) ** 2 + (yy / 0.05) ** 2))
    psf += 0.3 * np.exp(-0.5 * (((xx - 0.1) / 0.04) ** 2 + ((yy - 0.06) / 0.04) ** 2))
    return psf / psf.sum() * oversample**2


def test_psf_follows_the_detector_orientation_on_the_image_grid():
    epsf = _elongated_epsf()
    kwargs = dict(drop_size_arcsec=0.11, oversample=4, size_pix=15)
    plain = resampled_effective_psf(epsf, 8, 0.11, 0.055, **kwargs)
    # detector x along image y, detector y along image -x (a quarter turn)
    quarter = resampled_effective_psf(epsf, 8, 0.11, 0.055, detector_to_image=[[0, -1], [1, 0]], **kwargs)
    # parity flip: detector y along image -y
    flipped = resampled_effective_psf(epsf, 8, 0.11, 0.055, detector_to_image=[[1, 0], [0, -1]], **kwargs)
    peak = plain.max()
    assert np.abs(quarter - np.rot90(plain, -1)).max() < 0.01 * peak  # +x (columns) onto +y (rows)
    assert np.abs(flipped - plain[::-1, :]).max() < 0.01 * peak
    assert np.abs(quarter - plain).max() > 0.2 * peak
    assert abs(quarter[::4, ::4].sum() / plain[::4, ::4].sum() - 1) < 1e-3


def test_detector_to_image_matrix_from_two_wcs():
    image = tan_wcs((200, 200), 0.055)
    detector = WCS(naxis=2)
    detector.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    detector.wcs.crval = image.wcs.crval
    detector.wcs.crpix = [80.0, 120.0]
    angle = np.deg2rad(30.0)
    s = 0.11 / 3600
    # detector pixel axes rotated by 30 deg on the sky and mirrored relative to the image's
    detector.wcs.cd = s * np.array([[np.cos(angle), np.sin(angle)], [np.sin(angle), -np.cos(angle)]]) @ np.diag([-1, 1])
    matrix = detector_to_image_matrix(detector, image, 100.0, 100.0)
    assert abs(abs(np.linalg.det(matrix)) - 1) < 1e-6
    expected = np.linalg.inv(image.pixel_scale_matrix) @ detector.pixel_scale_matrix
    expected /= np.sqrt(abs(np.linalg.det(expected)))
    assert np.allclose(matrix, expected, atol=1e-4)
