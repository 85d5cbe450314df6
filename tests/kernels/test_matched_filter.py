import warnings

import numpy as np
import pytest
from astropy.convolution import convolve
from photutils.detection import find_peaks

from romanflow.kernels.matched_filter import detection_images, local_peaks, matched_filter_snr


def _astropy_snr(image, variance, kernel):
    signal = convolve(image, kernel, normalize_kernel=False, boundary="fill", fill_value=0.0)
    noise = np.sqrt(convolve(variance, kernel**2, normalize_kernel=False, boundary="fill", fill_value=0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(noise > 0, signal / noise, 0.0)


@pytest.mark.parametrize("shape, size", [((61, 75), 7), ((600, 530), 7), ((40, 33), 5), ((9, 12), 7)])
def test_matched_filter_equals_astropy_convolve(shape, size):
    rng = np.random.default_rng(size + shape[0])
    image = rng.normal(0.0, 1.0, shape)
    variance = rng.uniform(0.5, 2.0, shape)
    unusable = rng.random(shape) < 0.05
    unusable[:, :3] = True  # a masked band along an edge
    image[unusable] = 0.0
    variance[unusable] = 0.0
    kernel = rng.uniform(0.0, 1.0, (size, size))  # not symmetric: the convolution's flip matters
    np.testing.assert_array_equal(matched_filter_snr(image, variance, kernel), _astropy_snr(image, variance, kernel))


def test_local_peaks_equal_photutils_find_peaks():
    rng = np.random.default_rng(7)
    image = rng.normal(0.0, 1.0, (300, 257))
    image[100, 50:52] = 9.0  # a plateau: both pixels are peaks
    image[0, 10] = image[150, -1] = 20.0  # on the border: not peaks
    image[1, 20] = 15.0  # next to the border: a peak
    x, y = local_peaks(image, 2.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = find_peaks(image, threshold=2.5, box_size=3, border_width=1)
    np.testing.assert_array_equal(x, expected["x_peak"])
    np.testing.assert_array_equal(y, expected["y_peak"])
    assert {(50, 100), (51, 100), (20, 1)} <= set(zip(x.tolist(), y.tolist()))
    assert local_peaks(np.zeros((5, 5)), 1.0)[0].size == 0


def test_detection_images_fall_back_to_the_background_rms():
    data = np.array([[5.0, np.nan, 7.0, 4.0]], np.float32)
    err = np.array([[0.5, 1.0, np.nan, 3.0]], np.float32)
    bad = ~np.isfinite(data)
    background = np.full(data.shape, 4.0)
    rms = np.full(data.shape, 2.0)
    residual, sigma, sky_variance = detection_images(data, err, bad, background, rms)
    assert residual is background and sky_variance is rms  # computed in place
    np.testing.assert_array_equal(residual, [[1.0, 0.0, 3.0, 0.0]])
    np.testing.assert_array_equal(sigma, [[0.5, 1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(sky_variance, [[0.25, 0.0, 4.0, 4.0]])
