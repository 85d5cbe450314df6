import warnings

import numpy as np
import pytest
from astropy.stats import SigmaClip
from photutils.background import Background2D, MedianBackground

from romanflow.kernels.background import box_background


def _photutils(data, mask, box, filter_size=3):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = Background2D(np.where(mask, 0.0, data), (box, box), filter_size=filter_size, mask=mask,
                                 sigma_clip=SigmaClip(sigma=3.0), bkg_estimator=MedianBackground())
        return reference.background, reference.background_rms


def _sky(shape, seed, dtype=np.float32):
    """A sloped, noisy sky with hot pixels, NaNs and masked pixels (one corner masked out entirely)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(5.0, 1.0, shape) + np.linspace(0.0, 3.0, shape[1])[None] + np.linspace(0, 1, shape[0])[:, None]
    data[rng.random(shape) < 0.01] = np.nan
    data[rng.random(shape) < 0.003] = 500.0
    mask = rng.random(shape) < 0.05
    mask[:40, :50] = True
    return data.astype(dtype), mask | ~np.isfinite(data)


# (shape, box): whole boxes only; a last row/column of boxes too small to be used (excluded, then filled);
# a last row and column large enough to be used (their pixels are laid out column by column by photutils)
@pytest.mark.parametrize("shape, box", [((256, 192), 32), ((300, 300), 64), ((125, 190), 32), ((127, 253), 64),
                                        ((97, 203), 24)])
@pytest.mark.parametrize("dtype, filter_size", [(np.float32, 3), (np.float64, 3), (np.float64, 1)])
def test_box_background_equals_photutils_background2d(shape, box, dtype, filter_size):
    data, mask = _sky(shape, seed=shape[0], dtype=dtype)
    background, rms = box_background(data, mask, box, filter_size=filter_size)
    expected_background, expected_rms = _photutils(data.astype(float), mask, box, filter_size)
    assert background.dtype == rms.dtype == np.float64
    np.testing.assert_array_equal(background, expected_background)
    np.testing.assert_array_equal(rms, expected_rms)


def test_box_background_of_a_flat_image_is_flat_and_of_a_masked_one_fails():
    data = np.full((128, 128), 3.5, np.float32)
    background, rms = box_background(data, np.zeros(data.shape, bool), 32)
    assert np.all(background == 3.5) and np.all(rms == 0.0)
    with pytest.raises(ValueError):
        box_background(data, np.ones(data.shape, bool), 32)
    with pytest.raises(ValueError):
        box_background(data, np.zeros(data.shape, bool), 200)
