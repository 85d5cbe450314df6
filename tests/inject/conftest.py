"""Small synthetic L2 exposures and an L3 mosaic of them (Gaussian PSF of known width), shared by the tests."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from romanflow.geometry import DetectorProjection, pointing_for
from romanflow.mosaic.synthetic import make_rate_image

SIZE = 200
DETECTOR = "WFI07"
SIGMA_PIX = 1.2
#: FWHM (arcsec) of the synthetic images' Gaussian PSF: what the catalog and the injection are told.
FWHM_ARCSEC = 2.3548 * SIGMA_PIX * 0.11


@dataclass
class Field:
    l2: list  # paths of two dithered exposures
    l3: Path  # their mosaic
    pointing: object
    real: tuple  # (ra, dec, flux DN/s) of the real stars


def write_exposure(folder, k, pointing, stars, seed):
    from romanflow.formats import write_l2

    image = make_rate_image(DETECTOR, pointing.with_offsets(0.4 * k, 0.3 * k), SIZE, stars, sky=1.0,
                            sigma_pix=SIGMA_PIX, seed=seed, exposure=k + 1)
    name = f"r0000101001001001001_{k + 1:04d}_wfi07_cal.asdf"
    image.meta["filename"] = name
    return write_l2(image, Path(folder) / name)


@pytest.fixture(scope="session")
def field(tmp_path_factory):
    from romanflow.mosaic.pipeline import make_mosaic
    from romanflow.mosaic.skycells import cutout_wcs, skycell_containing, skycell_wcs

    folder = tmp_path_factory.mktemp("inject_field")
    p = pointing_for(150.1, 2.2, 30.0)
    dp = DetectorProjection(DETECTOR, p, SIZE)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(15, SIZE - 15, 12), rng.uniform(15, SIZE - 15, 12)
    ra, dec = dp.pixel_to_world(x, y)
    real = (ra, dec, rng.uniform(50.0, 500.0, 12))
    l2 = [write_exposure(folder / "l2", k, p, real, seed=10 + k) for k in range(2)]
    ra_c, dec_c = dp.pixel_to_world((SIZE - 1) / 2, (SIZE - 1) / 2)
    cell = skycell_containing(ra_c, dec_c)[0]
    full = skycell_wcs(cell)
    cx, cy = full.world_to_pixel_values(ra_c, dec_c)
    wcs = cutout_wcs(full, int(cx) - 110, int(cy) - 110, 220, 220)
    l3 = folder / "l3" / "r00001_p_v01001001_skycellx_f158_coadd.asdf"
    make_mosaic(l2, wcs, l3, skycell=cell, optical_element="F158")
    return Field(l2, l3, p, real)
