"""The mosaic PSF against a star field drizzled, by the mosaic's own resampling, from known member PSFs."""

import numpy as np
import pytest
from astropy.wcs import WCS

from romanflow.catalog.mosaic_psf import MosaicMember, mosaic_psf
from romanflow.errors import RomanflowError
from romanflow.exposure import RateImage
from romanflow.mosaic.resample import resample
from romanflow.psf import psf_model

N = 160  # member side (pixels): a central patch of the detector
DET, BAND = "WFI07", "F158"


def _tan(scale_arcsec, rot_deg, crpix, shape):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [30.0, -10.0]
    w.wcs.crpix = crpix
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    w.wcs.cd = scale_arcsec / 3600.0 * np.array([[-c, s], [s, c]])
    w.array_shape = shape
    return w


def test_mosaic_psf_matches_drizzled_stars():
    members = [MosaicMember(DET, _tan(0.11, 0.0, [80.5, 80.5], (N, N)), (N, N), 1.0, 100.0),
               MosaicMember(DET, _tan(0.11, 30.0, [83.2, 78.9], (N, N)), (N, N), 1.5, 100.0)]
    out = _tan(0.055, 10.0, [120.5, 120.5], (240, 240))
    stars = [(90.3, 100.7), (150.6, 130.2), (118.0, 160.5)]  # mosaic pixels
    model = psf_model(DET, BAND)
    offset = (4088 - N) / 2.0
    images = []
    for k, m in enumerate(members):
        data = np.zeros((N, N))
        for sx, sy in stars:
            ra, dec = out.pixel_to_world_values(sx, sy)
            mx, my = m.wcs.world_to_pixel_values(ra, dec)
            jx, jy = int(np.floor(mx + 0.5)), int(np.floor(my + 0.5))
            stamp = model.image(mx + offset, my + offset, size=41, phase=(mx - jx, my - jy))
            data[jy - 20:jy + 21, jx - 20:jx + 21] += 1000.0 * stamp
        shape = data.shape
        images.append(RateImage(data=data.astype(np.float32), err=np.ones(shape, np.float32),
                                dq=np.zeros(shape, np.uint32), var_poisson=np.zeros(shape, np.float32),
                                var_rnoise=np.full(shape, m.var_rnoise, np.float32),
                                meta={"filename": f"m{k}", "exposure": {"exposure_time": 100.0}}, wcs=m.wcs))
    mosaic = resample(images, out, kernel="square", pixfrac=0.8, sky_match=False, units="rate").arrays["data"]
    for sx, sy in stars:
        psf = mosaic_psf(sx, sy, out, members, BAND, kernel="square", pixfrac=0.8, half=10)
        ix, iy = int(np.floor(sx + 0.5)), int(np.floor(sy + 0.5))
        cut = mosaic[iy - 10:iy + 11, ix - 10:ix + 11] / 1000.0
        assert np.nanmax(np.abs(cut - psf)) < 0.01 * np.nanmax(cut)
        assert np.nansum(psf) == pytest.approx(np.nansum(cut), rel=0.01)
    # a mosaic PSF built from one member only is not the combined one (the test can fail)
    alone = mosaic_psf(*stars[0], out, members[:1], BAND, kernel="square", pixfrac=0.8, half=10)
    both = mosaic_psf(*stars[0], out, members, BAND, kernel="square", pixfrac=0.8, half=10)
    assert np.nanmax(np.abs(alone - both)) > 0.02 * np.nanmax(both)
    with pytest.raises(RomanflowError, match="no member covers"):
        mosaic_psf(-500.0, -500.0, out, members, BAND)
