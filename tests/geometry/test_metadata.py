"""Exposure metadata from the geometry: wcsinfo, pointing and S_REGION."""

import numpy as np

from geometry_helpers import sep_mas
from romanflow import geometry as g


def test_wcsinfo_and_pointing_metadata_round_trip():
    pointing = g.pointing_for(210.5, -12.25, 95.0, va_scale=1.00002)
    meta = {"wcsinfo": g.wcsinfo_meta("WFI05", pointing), "velocity_aberration": {"scale_factor": 1.00002},
            "pointing": g.pointing_meta(pointing)}
    info = meta["wcsinfo"]
    assert info["aperture_name"] == "WFI_CEN" and info["vparity"] == -1 and info["v3yangle"] == -60.0
    assert info["s_region"].startswith("POLYGON ICRS ") and len(info["s_region"].split()) == 10
    assert g.pointing_from_meta(meta) == pointing
    assert abs(meta["pointing"]["pa_aperture"] - 35.0) < 1e-9
    # V1 lies about half a degree from the WFI centre
    # (the flat hypot of (V2, V3) ignores the sphere and velocity aberration: measured 438 mas short)
    sep = sep_mas(meta["pointing"]["ra_v1"], meta["pointing"]["dec_v1"], 210.5, -12.25)
    assert abs(sep - np.hypot(*g.WFI_CEN_V2V3) * 1e3) < 1000.0, "V1 distance off by > 1 arcsec"


def test_s_region_of_gwcs_image_matches_detector_footprint():
    pointing = g.pointing_for(40.0, 5.0, 250.0)
    size = 248
    wcs = g.detector_gwcs("WFI03", pointing, size)
    from_wcs = [float(v) for v in g.image_s_region(wcs, (size, size)).split()[2:]]
    from_proj = [float(v) for v in g.s_region("WFI03", pointing, size).split()[2:]]
    ra_w, dec_w = np.array(from_wcs[0::2]), np.array(from_wcs[1::2])
    ra_p, dec_p = np.array(from_proj[0::2]), np.array(from_proj[1::2])
    assert sep_mas(ra_w, dec_w, ra_p, dec_p).max() < 0.01, "corners differ by > 0.01 mas"
