"""Point sources on whole pixels convolved with a kernel: the FFT convolution of a flux map, summed directly."""

import numba
import numpy as np
import pytest
from scipy.signal import oaconvolve

from romanflow.kernels.point_convolution import convolve_point_sources


def _flux_map_convolution(shape, iy, ix, flux, kernel):
    """The reference: a padded flux map convolved by FFT, cropped to the image."""
    c = (kernel.shape[0] - 1) // 2
    ny, nx = shape
    fluxmap = np.zeros((ny + 2 * c, nx + 2 * c))
    keep = (iy + c >= 0) & (iy + c < ny + 2 * c) & (ix + c >= 0) & (ix + c < nx + 2 * c)
    np.add.at(fluxmap, (iy[keep] + c, ix[keep] + c), flux[keep])
    return oaconvolve(fluxmap, kernel, mode="same")[c:c + ny, c:c + nx]


def test_matches_the_fft_convolution_of_a_flux_map_sources_off_the_image_included():
    rng = np.random.default_rng(4)
    shape = (70, 90)
    kernel = rng.random((21, 21))  # not symmetric: a flipped kernel would not match
    n = 400
    iy = rng.integers(-14, shape[0] + 14, n)
    ix = rng.integers(-14, shape[1] + 14, n)
    iy[:5], ix[:5] = 30, 40  # several sources on one pixel
    flux = rng.uniform(0.1, 100.0, n)
    image = convolve_point_sources(shape, iy, ix, flux, kernel)
    assert image.shape == shape and image.dtype == np.float64
    np.testing.assert_allclose(image, _flux_map_convolution(shape, iy, ix, flux, kernel), rtol=1e-10, atol=1e-9)


def test_one_source_lays_the_kernel_down_and_the_thread_count_does_not_matter():
    kernel = np.arange(25.0).reshape(5, 5)
    image = convolve_point_sources((9, 9), [4], [3], [2.0], kernel)
    expected = np.zeros((9, 9))
    expected[2:7, 1:6] = 2.0 * kernel
    np.testing.assert_array_equal(image, expected)
    # a source beyond the reach of the kernel adds nothing; one at the reach adds its edge
    assert not convolve_point_sources((9, 9), [-3], [4], [1.0], kernel).any()
    np.testing.assert_array_equal(convolve_point_sources((9, 9), [-2], [4], [1.0], kernel)[0, 2:7], kernel[4])
    rng = np.random.default_rng(1)
    args = ((64, 64), rng.integers(-3, 67, 300), rng.integers(-3, 67, 300), rng.random(300), rng.random((7, 7)))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = convolve_point_sources(*args)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(convolve_point_sources(*args), serial)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="odd size"):
        convolve_point_sources((5, 5), [1], [1], [1.0], np.ones((4, 4)))
    with pytest.raises(ValueError, match="differ in length"):
        convolve_point_sources((5, 5), [1, 2], [1], [1.0], np.ones((3, 3)))
