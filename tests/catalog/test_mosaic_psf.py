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


def _drizzled_field(stars, pixfrac=0.8):
    """Two members (one rotated by 30°) with 1000-unit stars at mosaic pixels ``stars``, drizzled."""
    members = [MosaicMember(DET, _tan(0.11, 0.0, [80.5, 80.5], (N, N)), (N, N), 1.0, 100.0),
               MosaicMember(DET, _tan(0.11, 30.0, [83.2, 78.9], (N, N)), (N, N), 1.5, 100.0)]
    out = _tan(0.055, 10.0, [120.5, 120.5], (240, 240))
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
    mosaic = resample(images, out, kernel="square", pixfrac=pixfrac, sky_match=False, units="rate").arrays["data"]
    return members, out, mosaic


def test_mosaic_psf_matches_drizzled_stars():
    stars = [(90.3, 100.7), (150.6, 130.2), (118.0, 160.5)]  # mosaic pixels
    members, out, mosaic = _drizzled_field(stars)
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


def test_fluxes_with_the_mosaic_psf_are_unbiased_where_one_mean_psf_is_not():
    from romanflow.catalog.mosaic_psf import MosaicPSF
    from romanflow.catalog.photometry import fit_psf_photometry, roman_psf_model, stamp_psf_fluxes
    from romanflow.catalog.products import detector_to_image_matrix

    rng = np.random.default_rng(4)
    stars = [(float(x), float(y)) for x, y in rng.uniform(60, 180, size=(12, 2))]
    stars = [s for k, s in enumerate(stars) if all(np.hypot(s[0] - t[0], s[1] - t[1]) > 12 for t in stars[:k])]
    members, out, mosaic = _drizzled_field(stars, pixfrac=1.0)
    x, y = np.array(stars).T
    data = np.nan_to_num(mosaic)
    err = np.full(data.shape, 1e-3)
    psf = MosaicPSF(members, out, BAND, pixfrac=1.0)
    fit = stamp_psf_fluxes(data, err, x, y, psf.stamps(x, y, half=5), fit_half=2)
    assert np.all(fit["flags"] == 0)
    assert np.max(np.abs(fit["flux"] / 1000.0 - 1)) < 0.005, fit["flux"]
    # the mean PSF of the members, drop-convolved, fitted everywhere: percent-level errors that vary by star
    matrices = [detector_to_image_matrix(m.wcs, out, 120.0, 120.0) for m in members]
    model, _ = roman_psf_model([DET, DET], BAND, 0.055, drop_size_arcsec=0.11, detector_to_image=matrices)
    mean = fit_psf_photometry(data, err, x, y, np.full(len(x), 1000.0), model, fit_shape=(5, 5))
    # (measured: at most 0.2% with the mosaic's PSF, 0.6-4% with the mean one)
    assert np.max(np.abs(mean["flux"] / 1000.0 - 1)) > 0.01
    # sources beyond every member: NaN stamps, a failed fit
    far = psf.stamps(np.array([-400.0]), np.array([-400.0]), half=5)
    assert np.isnan(far).all()
