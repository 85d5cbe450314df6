import numpy as np
from astropy.coordinates import SkyCoord

from romanflow.kernels.sky_projection import angular_separation


def test_angular_separation_matches_astropy_across_ra_zero_and_the_poles():
    rng = np.random.default_rng(7)
    ra0, dec0 = 359.9, 89.5
    ra = np.concatenate([rng.uniform(0, 360, 500), [0.05, 359.95, 180.0]])
    dec = np.concatenate([rng.uniform(-90, 90, 500), [89.6, 89.4, -90.0]])
    expected = SkyCoord(ra0, dec0, unit="deg").separation(SkyCoord(ra, dec, unit="deg")).deg
    np.testing.assert_allclose(angular_separation(ra0, dec0, ra, dec), expected, rtol=0, atol=1e-9)
