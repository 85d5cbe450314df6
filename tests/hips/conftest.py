"""Small synthetic L3 mosaics whose every pixel value is a known function of sky position."""

from __future__ import annotations

import numpy as np
import pytest

#: Two neighbouring sky cells of one projection region (their grids overlap by 100 pixels).
CELL_A, CELL_B = "009p19x16y30", "009p19x15y30"
#: Point sources: (ra, dec) in degrees, peak in MJy/sr, Gaussian sigma in arcsec.
#: (cell A's pixels (50, 420), in the overlap with cell B; (400, 550); (650, 700); (300, 350)).
SOURCES = [(10.012266, 19.999755, 40.0, 0.25), (10.006584, 20.001761, 25.0, 0.25),
           (10.002529, 20.004066, 30.0, 0.25), (10.008198, 19.998700, 15.0, 0.25)]
SKY = 0.2
BAND_SCALE = {"F158": 1.0, "F106": 0.6, "F213": 1.4}


def truth(ra, dec, band="F158"):
    """Surface brightness (MJy/sr) of the synthetic sky at (ra, dec) deg."""
    ra = np.asarray(ra, float)
    dec = np.asarray(dec, float)
    value = SKY + 0.05 * (dec - 20.0) * 3600.0 / 30.0  # a gentle gradient north
    for r0, d0, peak, sigma in SOURCES:
        dx = (ra - r0) * np.cos(np.radians(d0)) * 3600.0
        dy = (dec - d0) * 3600.0
        value = value + peak * np.exp(-0.5 * (dx**2 + dy**2) / sigma**2)
    return value * BAND_SCALE[band]


def write_synthetic_mosaic(path, cell, x0, y0, nx, ny, band="F158"):
    """An L3 file on the sky cell ``cell``'s grid, sub-grid ``[y0:y0+ny, x0:x0+nx]``, data = :func:`truth`."""
    from romanflow.mosaic.resample import MosaicProduct, write_mosaic
    from romanflow.mosaic.skycells import cutout_wcs, skycell_wcs

    wcs = cutout_wcs(skycell_wcs(cell), x0, y0, nx, ny)
    ys, xs = np.mgrid[0:ny, 0:nx]
    ra, dec = wcs.pixel_to_world_values(xs, ys)
    data = truth(ra, dec, band).astype(np.float32)
    weight = np.full((ny, nx), 4.0, np.float32)
    weight[:, :3] = 0.0  # a strip without data
    data[weight == 0] = np.nan
    zeros = np.zeros((ny, nx), np.float32)
    arrays = {"data": data, "err": np.full((ny, nx), 0.5, np.float32), "weight": weight,
              "context": np.ones((1, ny, nx), np.uint32), "exposure_time": np.full((ny, nx), 100.0, np.float32),
              "var_rnoise": zeros + 0.1, "var_poisson": zeros + 0.1, "var_flat": zeros}
    product = MosaicProduct(arrays=arrays, wcs=wcs, inputs=[], meta={"units": "surface_brightness"})
    write_mosaic(product, path, skycell=cell, optical_element=band)
    return path


@pytest.fixture(scope="session")
def mosaics(tmp_path_factory):
    """{"A": F158 of cell A, "B": F158 of cell B, "A106": F106 of cell A}."""
    folder = tmp_path_factory.mktemp("l3")
    return {
        "A": write_synthetic_mosaic(folder / "a_f158_l3.asdf", CELL_A, 0, 300, 800, 500),
        "B": write_synthetic_mosaic(folder / "b_f158_l3.asdf", CELL_B, 4700, 300, 300, 500),
        "A106": write_synthetic_mosaic(folder / "a_f106_l3.asdf", CELL_A, 0, 300, 800, 500, band="F106"),
    }


@pytest.fixture(scope="session")
def sky():
    """The synthetic sky: ``sky.truth(ra, dec, band)`` and ``sky.SOURCES``."""
    import types

    return types.SimpleNamespace(truth=truth, SOURCES=SOURCES, SKY=SKY, CELL_A=CELL_A, CELL_B=CELL_B,
                                 write_synthetic_mosaic=write_synthetic_mosaic)
