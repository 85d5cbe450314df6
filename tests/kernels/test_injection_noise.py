"""Noise with a given pixel-to-pixel correlation, as injection adds to a resampled image."""

import numpy as np
import pytest

from romanflow.catalog.detect import noise_correlation
from romanflow.kernels.injection import correlation_kernel
from romanflow.psf import convolve_same


def test_white_noise_through_the_kernel_has_the_correlation_asked_for():
    rng = np.random.default_rng(3)
    # the correlation of a drizzle-like 2x2 box average, measured as the catalog measures it
    box = np.ones((2, 2)) / 2.0
    target = convolve_same(rng.normal(size=(600, 600)), box)
    rho = noise_correlation(target, np.ones_like(target))
    rho = rho / rho[8, 8]
    h = correlation_kernel(rho)
    assert np.sum(h**2) == pytest.approx(1.0)
    made = convolve_same(rng.normal(size=(600, 600)), h)
    got = noise_correlation(made, np.ones_like(made))
    assert got[8, 8] == pytest.approx(1.0, abs=0.02)  # the variance is kept
    np.testing.assert_allclose(got[6:11, 6:11], rho[6:11, 6:11], atol=0.02)
    assert rho[8, 9] > 0.4  # a real correlation, reproduced (not white noise)


def test_correlation_kernel_refuses_a_bad_shape():
    with pytest.raises(ValueError, match="odd side"):
        correlation_kernel(np.ones((4, 4)))
