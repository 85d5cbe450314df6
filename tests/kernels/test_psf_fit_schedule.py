import numpy as np

from romanflow.catalog.photometry import gaussian_psf, sampled_psf
from romanflow.kernels import psf_fit


def _field(n_sources, size, seed):
    """A noisy field of Gaussian stars, crowded around the lines where the fit tiles meet."""
    rng = np.random.default_rng(seed)
    edge = psf_fit.SCHEDULE_TILE
    x = np.concatenate([rng.uniform(5, size - 5, n_sources // 2), edge + rng.normal(0, 6, n_sources // 4),
                        rng.uniform(5, size - 5, n_sources - n_sources // 2 - n_sources // 4)])
    y = np.concatenate([rng.uniform(5, size - 5, n_sources // 2), rng.uniform(5, size - 5, n_sources // 4),
                        edge + rng.normal(0, 6, n_sources - n_sources // 2 - n_sources // 4)])
    flux = 10 ** rng.uniform(1.5, 4.0, n_sources)
    model = gaussian_psf(2.2)
    image = rng.normal(0.0, 1.0, (size, size))
    yy, xx = np.mgrid[0:size, 0:size]
    for xs, ys, fs in zip(x, y, flux):
        lo_x, lo_y = int(xs) - 12, int(ys) - 12
        box = (slice(max(lo_y, 0), lo_y + 25), slice(max(lo_x, 0), lo_x + 25))
        model.x_0, model.y_0, model.flux = xs, ys, fs
        image[box] += model(xx[box], yy[box])
    order = np.argsort(-flux)
    return image, np.rint(x[order]), np.rint(y[order]), sampled_psf(model)


def test_tiled_fits_of_neighbours_equal_the_fits_in_the_given_order(monkeypatch):
    image, x, y, (samples, oversample) = _field(1500, 1100, seed=3)
    err = np.ones_like(image)
    kwargs = dict(half=2, max_shift=1.5, subtract_neighbours=True, passes=3, model_half=12)
    tiled = psf_fit.fit_psf_sources(image, err, x, y, samples, oversample, **kwargs)
    monkeypatch.setattr(psf_fit, "SCHEDULE_TILE", 10**6)  # one tile: the sources one after the other
    in_order = psf_fit.fit_psf_sources(image, err, x, y, samples, oversample, **kwargs)
    assert np.count_nonzero(tiled["flags"] == 0) > 1000
    for key, values in in_order.items():
        np.testing.assert_array_equal(tiled[key], values, err_msg=key)
