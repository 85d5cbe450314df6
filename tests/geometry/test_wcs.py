"""The gwcs of a detector: round trip, bounding box, local pixel scale."""

import numpy as np

from romanflow import geometry as g
from romanflow.detector import SMALL_SCIENCE_SIZE


def test_gwcs_invert_round_trip():
    rng = np.random.default_rng(1)
    pointing = g.pointing_for(80.0, -30.0, 123.0, va_scale=1.0001)
    x = rng.uniform(-0.5, 4087.5, 2000)
    y = rng.uniform(-0.5, 4087.5, 2000)
    for name in ("WFI01", "WFI09", "WFI18"):
        ra, dec = g.DetectorProjection(name, pointing).pixel_to_world(x, y)
        xd, yd = g.detector_gwcs(name, pointing).invert(ra, dec)
        assert np.nanmax(np.abs(xd - x)) < 1e-4 and np.nanmax(np.abs(yd - y)) < 1e-4, \
            f"{name}: x or y off by > 1e-4 pixel"


def test_small_detector_gwcs_bounding_box():
    size = SMALL_SCIENCE_SIZE
    wcs = g.detector_gwcs("WFI11", g.pointing_for(10.0, 10.0, 10.0), size)
    assert wcs.bounding_box.bounding_box() == ((-0.5, size - 0.5), (-0.5, size - 0.5))
    assert np.isnan(wcs(size + 5.0, 0.0)[0])  # outside the bounding box


def test_local_pixel_scale_near_nominal():
    pointing = g.pointing_for(120.0, -5.0, 300.0)
    wcs = g.detector_gwcs("WFI08", pointing)
    scale = g.local_pixel_scale(wcs, [10.0, 2043.5, 4000.0], [10.0, 2043.5, 50.0])
    assert scale.shape == (3,)
    assert np.all((scale > 0.10) & (scale < 0.12)), "pixel scale outside 0.10-0.12 arcsec"
