import numpy as np
import pytest

from romanflow.catalog import photometry
from romanflow.catalog.synthetic import tan_wcs


def test_unit_conversions():
    area = (0.055 / 206264.806) ** 2
    # 1 MJy/sr over one 0.055" pixel is 1e15 nJy/sr * area
    assert photometry.njy_per_pixel_from_surface_brightness(area) == pytest.approx(1e15 * area)
    assert photometry.njy_per_pixel_from_count_rate(0.3, area) == pytest.approx(0.3e15 * area)
    mag, err = photometry.abmag(np.array([3.631e12, 1.0, -5.0]), np.array([3.631e11, 0.1, 1.0]))
    assert mag[0] == pytest.approx(0.0, abs=2e-3) and mag[1] == pytest.approx(31.4) and np.isnan(mag[2])
    assert err[1] == pytest.approx(2.5 / np.log(10) * 0.1)


def test_local_pixel_scale_from_wcs():
    from romanflow.geometry import local_pixel_scale

    wcs = tan_wcs((200, 200), pixel_scale_arcsec=0.055, rotation_deg=30)
    assert local_pixel_scale(wcs, [100.0], [100.0])[0] == pytest.approx(0.055, rel=1e-5)


def test_aperture_sums_of_gaussian_match_analytic_fraction():
    fwhm = 3.0
    model = photometry.gaussian_psf(fwhm)
    model.x_0, model.y_0, model.flux = 50.3, 49.6, 1000.0
    yy, xx = np.mgrid[0:100, 0:100]
    image = model(xx, yy)
    err = np.ones_like(image)
    radii = [2.0, 4.0, 8.0]
    flux, flux_err, edge = photometry.aperture_fluxes(image, err, [50.3], [49.6], radii)
    # pixel integration broadens the Gaussian: sigma² -> sigma² + 1/12 pixel²
    sigma2 = (fwhm / 2.3548) ** 2 + 1 / 12
    analytic = 1000.0 * (1 - np.exp(-np.array(radii) ** 2 / (2 * sigma2)))
    # (inside 2 pixels the pixel-uniform overlap weighting costs about 2%)
    assert np.allclose(flux[0], analytic, rtol=[0.03, 0.01, 0.01])
    assert np.allclose(flux_err[0], np.sqrt(np.pi * np.array(radii) ** 2), rtol=0.02)
    assert not edge[0]
    # computed for a pixel-centred PSF; the sub-pixel phase matters only in the smallest aperture
    assert np.allclose(photometry.psf_encircled_fraction(model, radii), flux[0] / 1000.0, rtol=[0.02, 0.005, 0.001])
    _, _, edge = photometry.aperture_fluxes(image, err, [3.0], [50.0], radii)
    assert edge[0]


def test_forced_psf_flux_is_unbiased_with_honest_errors():
    rng = np.random.default_rng(4)
    model = photometry.gaussian_psf(2.7)
    shape = (400, 400)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    xs = np.repeat(np.arange(20, 400, 30), 13)[:169] + rng.uniform(-0.5, 0.5, 169)
    ys = np.tile(np.arange(20, 400, 30), 13)[:169] + rng.uniform(-0.5, 0.5, 169)
    image = np.zeros(shape)
    for x, y in zip(xs, ys):
        model.x_0, model.y_0, model.flux = x, y, 200.0
        image += model(xx, yy)
    err = np.full(shape, 2.0)
    image += rng.normal(0, 2.0, shape)
    flux, flux_err, chi2 = photometry.forced_psf_fluxes(image, err, xs, ys, model)
    pull = (flux - 200.0) / flux_err
    assert abs(np.mean(pull)) < 0.25 and 0.85 < np.std(pull) < 1.15
    assert 0.7 < np.median(chi2) < 1.3


def test_background_weights_keep_bright_psf_fluxes_unbiased():
    """Weights from an error map that follows each pixel's noisy signal bias PSF fluxes low."""
    rng = np.random.default_rng(11)
    model = photometry.gaussian_psf(2.7)
    shape = (600, 600)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    grid = np.arange(15, 600, 30)
    xs = np.repeat(grid, len(grid)) + rng.uniform(-0.5, 0.5, len(grid) ** 2)
    ys = np.tile(grid, len(grid)) + rng.uniform(-0.5, 0.5, len(grid) ** 2)
    truth = np.zeros(shape)
    for x, y in zip(xs, ys):
        model.x_0, model.y_0, model.flux = x, y, 300.0
        truth += model(xx, yy)
    background_var = 1.0
    image = rng.poisson(truth).astype(float) + rng.normal(0, np.sqrt(background_var), shape)
    # the pipeline's error map: Poisson variance estimated from the measured signal
    err = np.sqrt(np.clip(image, 0, None) + background_var)
    flat_err = np.full(shape, np.sqrt(background_var))
    biased, _, _ = photometry.forced_psf_fluxes(image, err, xs, ys, model, fit_shape=(7, 7))
    flux, flux_err, chi2 = photometry.forced_psf_fluxes(image, err, xs, ys, model, fit_shape=(7, 7),
                                                        weight_err=flat_err)
    assert np.mean(biased) / 300.0 - 1 < -0.02  # the trap
    assert abs(np.mean(flux) / 300.0 - 1) < 0.006
    pull = (flux - 300.0) / flux_err
    assert 0.9 < np.std(pull) < 1.1  # errors propagate the total variance, not the weights'
    # free positions: same weights, same honesty
    fit = photometry.fit_psf_photometry(image, err, xs + 0.2, ys - 0.2, np.full(len(xs), 250.0), model,
                                        fit_shape=(7, 7), weight_err=flat_err)
    assert abs(np.mean(fit["flux"]) / 300.0 - 1) < 0.006
    assert 0.9 < np.std((fit["flux"] - 300.0) / fit["flux_err"]) < 1.15
    assert 0.9 < np.std((fit["x"] - xs) / fit["x_err"]) < 1.2


def test_annulus_background_clips_contaminants_and_reports_its_error():
    rng = np.random.default_rng(21)
    image = 5.0 + rng.normal(0.0, 1.0, (300, 300))
    xs = np.array([60.0, 150.0, 240.0] * 3)
    ys = np.repeat([60.0, 150.0, 240.0], 3)
    image[150, 162] += 500.0  # a bright pixel in one annulus
    image[60:63, 70:73] += 50.0
    level, level_err = photometry.annulus_background(image, xs, ys, 10.0, 14.0)
    assert np.all(np.abs(level - 5.0) < 4 * level_err)
    # 1.253 sigma / sqrt(n) for a median of ~250 pixels
    assert np.allclose(level_err, 1.2533 / np.sqrt(np.pi * (14**2 - 10**2)), rtol=0.15)
    edge, _ = photometry.annulus_background(image, np.array([-50.0]), np.array([150.0]), 10.0, 14.0)
    assert np.isnan(edge[0])
