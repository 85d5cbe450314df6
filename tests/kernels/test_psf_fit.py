import numpy as np

from romanflow.catalog.photometry import gaussian_psf, sampled_psf
from romanflow.kernels.psf_fit import FIT_FLAGS, fit_psf_sources


def _scene(xs, ys, flux, shape=(80, 80), fwhm=2.5):
    model = gaussian_psf(fwhm)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = np.zeros(shape)
    for x, y, f in zip(xs, ys, flux):
        model.x_0, model.y_0, model.flux = x, y, f
        image += model(xx, yy)
    return image, sampled_psf(model)


def test_noiseless_fit_recovers_position_and_flux():
    xs, ys, flux = np.array([20.3, 50.71, 30.0]), np.array([22.6, 41.15, 60.49]), np.array([100.0, 2500.0, 7.0])
    image, (samples, oversample) = _scene(xs, ys, flux)
    fit = fit_psf_sources(image, np.ones_like(image), xs + 0.4, ys - 0.3, samples, oversample,
                          flux_guess=flux * 0.5)
    assert np.all(fit["flags"] == 0)
    np.testing.assert_allclose(fit["x"], xs, atol=2e-3)
    np.testing.assert_allclose(fit["y"], ys, atol=2e-3)
    np.testing.assert_allclose(fit["flux"], flux, rtol=2e-3)
    assert np.all(fit["reduced_chi2"] < 1e-3)


def test_errors_match_the_scatter_and_fixed_positions_are_linear():
    rng = np.random.default_rng(3)
    xs = np.repeat(np.arange(8, 200, 16), 12) + rng.uniform(-0.5, 0.5, 144)
    ys = np.tile(np.arange(8, 200, 16), 12) + rng.uniform(-0.5, 0.5, 144)
    image, (samples, oversample) = _scene(xs, ys, np.full(144, 80.0), shape=(200, 200))
    noisy = image + rng.normal(0, 1.0, image.shape)
    err = np.ones_like(image)
    free = fit_psf_sources(noisy, err, xs, ys, samples, oversample, flux_guess=np.full(144, 60.0))
    assert 0.85 < np.std((free["flux"] - 80.0) / free["flux_err"]) < 1.15
    assert 0.85 < np.std((free["x"] - xs) / free["x_err"]) < 1.2
    fixed = fit_psf_sources(noisy, err, xs, ys, samples, oversample, free_position=False)
    assert np.all(np.isnan(fixed["x_err"])) and np.array_equal(fixed["x"], xs)
    assert 0.85 < np.std((fixed["flux"] - 80.0) / fixed["flux_err"]) < 1.15
    # twice the background noise share: errors of faint sources scale by the factor
    scaled = fit_psf_sources(noisy, err, xs, ys, samples, oversample, free_position=False, background_scale=2.0)
    np.testing.assert_allclose(scaled["flux_err"], 2.0 * fixed["flux_err"], rtol=1e-9)


def test_flags_for_edges_masks_and_empty_boxes():
    image, (samples, oversample) = _scene([1.2, 40.0, 60.0], [40.0, 40.0, 60.0], [100.0, 100.0, 100.0])
    mask = np.zeros(image.shape, bool)
    mask[39:42, 39:42] = True
    fit = fit_psf_sources(image, np.ones_like(image), np.array([1.2, 40.0, -50.0]), np.array([40.0, 40.0, 60.0]),
                          samples, oversample, mask=mask, flux_guess=np.full(3, 100.0))
    assert fit["flags"][0] & FIT_FLAGS["BOX_INCOMPLETE"]
    assert fit["flags"][1] & FIT_FLAGS["BOX_INCOMPLETE"]
    assert fit["flags"][2] & FIT_FLAGS["NO_DATA"] and np.isnan(fit["flux"][2])
    assert abs(fit["flux"][0] / 100.0 - 1) < 0.01  # fitted from the pixels that remain
