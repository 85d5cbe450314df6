"""Shared small scene for the mosaic tests: one detector patch, dithered pointings, a sky-cell cutout."""

from dataclasses import dataclass

import numpy as np
import pytest

from romanflow.geometry import DetectorProjection, pointing_for
from romanflow.mosaic.skycells import cutout_wcs, skycell_containing, skycell_wcs
from romanflow.mosaic.synthetic import make_rate_image

SIZE = 248
DETECTOR = "WFI07"


@dataclass
class Scene:
    pointing: object
    cell: str
    wcs: object  # cutout of the cell grid covering the detector patch
    stars: tuple  # (ra, dec, flux)

    def image(self, k=0, offset=(0.0, 0.0), stars=True, **kwargs):
        """L2 image for dither ``k`` offset by (dx, dy) arcsec."""
        p = self.pointing.with_offsets(*offset)
        im = make_rate_image(DETECTOR, p, SIZE, self.stars if stars else None, seed=100 + k, exposure=k + 1,
                             **kwargs)
        im.meta["filename"] = f"r0000101001001001001_{k + 1:04d}_wfi07_cal.asdf"
        return im


@pytest.fixture(scope="session")
def scene():
    p = pointing_for(150.1, 2.2, 30.0)
    dp = DetectorProjection(DETECTOR, p, SIZE)
    ra_c, dec_c = dp.pixel_to_world((SIZE - 1) / 2, (SIZE - 1) / 2)
    cell = skycell_containing(ra_c, dec_c)[0]
    full = skycell_wcs(cell)
    x, y = full.world_to_pixel_values(ra_c, dec_c)
    wcs = cutout_wcs(full, int(x) - 320, int(y) - 320, 640, 640)
    # isolated stars on a grid well inside the patch
    g = np.arange(40, SIZE - 40, 42.0) + 0.3
    gx, gy = np.meshgrid(g, g)
    ra, dec = dp.pixel_to_world(gx.ravel(), gy.ravel())
    flux = np.linspace(200.0, 2000.0, ra.size)
    return Scene(p, cell, wcs, (ra, dec, flux))
