import numpy as np

from romanflow.catalog.photometry import gaussian_psf, sampled_psf
from romanflow.kernels.psf_fit import fit_psf_sources
from romanflow.source_flags import EDGE, LEFT_BOX, PSF_FIT_FAILED


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
    assert fit["flags"][0] & EDGE
    assert fit["flags"][1] & EDGE
    assert fit["flags"][2] & PSF_FIT_FAILED and np.isnan(fit["flux"][2])
    assert abs(fit["flux"][0] / 100.0 - 1) < 0.01  # fitted from the pixels that remain


def test_close_neighbours_are_fitted_with_each_others_models_subtracted():
    rng = np.random.default_rng(5)
    xs, ys, flux = np.array([30.2, 32.9, 60.4]), np.array([30.6, 31.3, 50.0]), np.array([4000.0, 1000.0, 500.0])
    image, (samples, oversample) = _scene(xs, ys, flux)
    noisy = image + rng.normal(0, 0.5, image.shape)
    err = np.full_like(image, 0.5)
    start_x, start_y = np.rint(xs), np.rint(ys)  # detection peaks; no starting fluxes
    alone = fit_psf_sources(noisy, err, start_x, start_y, samples, oversample)
    # each pass halves what is left of the blend's error
    together = fit_psf_sources(noisy, err, start_x, start_y, samples, oversample, subtract_neighbours=True,
                               passes=10, max_shift=1.5)
    assert abs(alone["flux"][1] / flux[1] - 1) > 0.05  # the bright neighbour's light biases an independent fit
    assert np.all(np.abs(together["flux"] - flux) < 4 * together["flux_err"])
    assert np.all(np.abs(together["x"] - xs) < 4 * together["x_err"])
    assert np.all(np.abs(together["y"] - ys) < 4 * together["y_err"])
    assert np.all(together["flags"] == 0)
    # the isolated source does not care
    assert abs(together["flux"][2] - alone["flux"][2]) < 0.1 * together["flux_err"][2]


def test_a_fit_that_wanders_off_is_flagged():
    image, (samples, oversample) = _scene([40.0], [40.0], [500.0])
    fit = fit_psf_sources(image, np.ones_like(image), np.array([38.0]), np.array([40.0]), samples, oversample,
                          max_shift=1.0)
    assert fit["flags"][0] & LEFT_BOX
