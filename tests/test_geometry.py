"""Focal-plane geometry: agreement with galsim.roman, round trips, gwcs vs fast path, layout."""

import numpy as np
import pytest

from romanflow import geometry as g
from romanflow.detector import DETECTORS, SMALL_SCIENCE_SIZE
from romanflow.errors import RomanflowError

PIX_X = np.array([0.0, 4087.0, 0.0, 4087.0, 2043.5, 1000.3, 3500.7])
PIX_Y = np.array([0.0, 0.0, 4087.0, 4087.0, 2043.5, 3000.2, 200.1])


def _sep_mas(ra1, dec1, ra2, dec2):
    dra = ((np.asarray(ra1) - ra2 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec1))
    return np.hypot(dra, np.asarray(dec1) - dec2) * 3.6e6


@pytest.mark.parametrize("ra, dec, pa", [(200.0, -40.0, 240.0), (10.0, 85.0, 60.0), (33.0, 20.0, 240.0)])
def test_matches_galsim_all_detectors(ra, dec, pa):
    # At these rolls galsim's focal-plane axes lie along the sky's north, where its
    # per-detector construction is that of a rigid focal plane.
    pointing = g.pointing_for(ra, dec, pa)
    wcs = g.galsim_wcs(pointing)
    for name in DETECTORS:
        ra_g, dec_g = wcs[name].toWorld(PIX_X + 1.0, PIX_Y + 1.0, units="deg")
        ra_f, dec_f = g.DetectorProjection(name, pointing).pixel_to_world(PIX_X, PIX_Y)
        ra_w, dec_w = g.detector_gwcs(name, pointing)(PIX_X, PIX_Y)
        assert _sep_mas(ra_g, dec_g, ra_f, dec_f).max() < 1.0, name
        assert _sep_mas(ra_g, dec_g, ra_w, dec_w).max() < 1.0, name


def test_galsim_other_rolls_within_its_nonrigidity():
    # galsim orients each detector from the sky's north at the detector centre,
    # which departs from a rigid focal plane by a few mas at other rolls.
    pointing = g.pointing_for(150.0, -10.0, 0.0)
    wcs = g.galsim_wcs(pointing)
    worst = 0.0
    for name in DETECTORS:
        ra_g, dec_g = wcs[name].toWorld(PIX_X + 1.0, PIX_Y + 1.0, units="deg")
        ra_f, dec_f = g.DetectorProjection(name, pointing).pixel_to_world(PIX_X, PIX_Y)
        worst = max(worst, _sep_mas(ra_g, dec_g, ra_f, dec_f).max())
    assert worst < 10.0


def test_detector_centres_in_telescope_frame():
    import galsim.roman.roman_wcs as rw

    for name in DETECTORS:
        k = int(name[3:])
        v2, v3 = g.detector_center_v2v3(name)
        # galsim tabulates each detector's field position relative to the boresight (deg)
        expected = np.hypot(rw.sca_data[1, k - 1], rw.sca_data[2, k - 1]) * 3600.0
        assert abs(np.hypot(v2, v3) - expected) < 5.0, name
        assert g.fit_rms_mas(name) < 0.01
    # the WFI centre lies well inside the array (which spans ~2900 arcsec)
    centres = np.array([g.detector_center_v2v3(n) for n in DETECTORS])
    assert np.hypot(*(centres.mean(axis=0) - g.WFI_CEN_V2V3)) < 300.0


def test_pixel_scale_and_parity():
    parities = []
    for name in DETECTORS:
        model = g.distortion_transform(name)
        v2a, v3a = model(2043.5, 2043.5)
        v2b, v3b = model(2044.5, 2043.5)
        v2c, v3c = model(2043.5, 2044.5)
        ex = np.array([v2b - v2a, v3b - v3a])
        ey = np.array([v2c - v2a, v3c - v3a])
        assert 0.10 < np.hypot(*ex) < 0.12 and 0.10 < np.hypot(*ey) < 0.12
        cos_angle = np.dot(ex, ey) / (np.hypot(*ex) * np.hypot(*ey))
        assert abs(cos_angle) < 0.05  # the optics shear the pixel grid by up to ~1.5 deg
        parities.append(np.sign(ex[0] * ey[1] - ex[1] * ey[0]))
    # all detectors are seen with the same handedness
    assert len(set(parities)) == 1


def test_round_trips():
    rng = np.random.default_rng(1)
    pointing = g.pointing_for(80.0, -30.0, 123.0, va_scale=1.0001)
    x = rng.uniform(-0.5, 4087.5, 2000)
    y = rng.uniform(-0.5, 4087.5, 2000)
    for name in ("WFI01", "WFI09", "WFI18"):
        proj = g.DetectorProjection(name, pointing)
        ra, dec = proj.pixel_to_world(x, y)
        xb, yb = proj.world_to_pixel(ra, dec)
        assert np.abs(xb - x).max() < 1e-4 and np.abs(yb - y).max() < 1e-4
        model = g.distortion_transform(name)
        xc, yc = model.inverse(*model(x, y))
        assert np.abs(xc - x).max() < 1e-4 and np.abs(yc - y).max() < 1e-4
        wcs = g.detector_gwcs(name, pointing)
        xd, yd = wcs.invert(ra, dec)
        assert np.nanmax(np.abs(xd - x)) < 1e-4 and np.nanmax(np.abs(yd - y)) < 1e-4


def test_gwcs_and_fast_projection_agree():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 4087, 500)
    y = rng.uniform(0, 4087, 500)
    for pointing in (g.pointing_for(359.9, 0.1, 17.0), g.pointing_for(45.0, 89.7, 200.0, va_scale=0.9999)):
        for name in DETECTORS:
            ra_w, dec_w = g.detector_gwcs(name, pointing)(x, y)
            ra_f, dec_f = g.DetectorProjection(name, pointing).pixel_to_world(x, y)
            assert _sep_mas(ra_w, dec_w, ra_f, dec_f).max() / 3.6e6 < 1e-6


def test_small_detector_is_central_patch():
    size = SMALL_SCIENCE_SIZE
    o = (4088 - size) / 2
    x = np.array([0.0, 10.5, size - 1.0])
    y = np.array([0.0, 100.0, size - 1.0])
    small = g.distortion_transform("WFI11", size)
    full = g.distortion_transform("WFI11")
    np.testing.assert_allclose(small(x, y), full(x + o, y + o), atol=1e-9)
    pointing = g.pointing_for(10.0, 10.0, 10.0)
    wcs = g.detector_gwcs("WFI11", pointing, size)
    assert wcs.bounding_box.bounding_box() == ((-0.5, size - 0.5), (-0.5, size - 0.5))
    assert np.isnan(wcs(size + 5.0, 0.0)[0])  # outside the bounding box
    proj = g.DetectorProjection("WFI11", pointing, size)
    ra, dec = proj.pixel_to_world(x, y)
    ra_full, dec_full = g.DetectorProjection("WFI11", pointing).pixel_to_world(x + o, y + o)
    assert _sep_mas(ra, dec, ra_full, dec_full).max() < 1e-6


def test_detectors_do_not_overlap_and_field_size():
    pointing = g.pointing_for(120.0, 45.0, 30.0)
    corners = np.vstack([g.DetectorProjection(n, pointing).footprint() for n in DETECTORS])
    # largest corner-to-corner separation across the field
    ra, dec = np.radians(corners[:, 0]), np.radians(corners[:, 1])
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
    span = np.degrees(np.arccos(np.clip(xyz @ xyz.T, -1, 1))).max()
    assert 0.7 < span < 0.9
    # random points over the field: each is seen by at most one detector
    rng = np.random.default_rng(3)
    n = 20000
    cra, cdec = 120.0, 45.0
    pra = cra + rng.uniform(-0.5, 0.5, n) / np.cos(np.radians(cdec))
    pdec = cdec + rng.uniform(-0.5, 0.5, n)
    count = np.zeros(n, dtype=int)
    for name in DETECTORS:
        proj = g.DetectorProjection(name, pointing)
        count += proj.contains(*proj.world_to_pixel(pra, pdec))
    assert count.max() == 1
    covered = g.detectors_covering(pra, pdec, pointing)
    np.testing.assert_array_equal(covered != "", count == 1)
    # covered area ~ 18 x (4088 x 0.11")^2 = 0.281 deg^2 (sampled over a 1 deg^2 box)
    assert abs(count.mean() - 0.281) < 0.02


def test_detectors_covering_scalar():
    pointing = g.pointing_for(250.0, -60.0, 300.0)
    for name in ("WFI01", "WFI14"):
        ra, dec = g.DetectorProjection(name, pointing).pixel_to_world(100.0, 3000.0)
        assert g.detectors_covering(float(ra), float(dec), pointing) == name
    assert g.detectors_covering(250.0, -58.0, pointing) is None


def test_roll_ref_is_position_angle_of_v3():
    pointing = g.pointing_for(20.0, 30.0, 40.0)
    ra, dec = g.v2v3_to_world(np.array([g.WFI_CEN_V2V3[0]] * 2),
                              np.array([g.WFI_CEN_V2V3[1], g.WFI_CEN_V2V3[1] + 1.0]), pointing)
    assert abs(ra[0] - 20.0) < 1e-9 and abs(dec[0] - 30.0) < 1e-9
    east = (ra[1] - ra[0]) * np.cos(np.radians(dec[0]))
    north = dec[1] - dec[0]
    assert abs(np.degrees(np.arctan2(east, north)) - 40.0) < 1e-3


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
    sep = _sep_mas(meta["pointing"]["ra_v1"], meta["pointing"]["dec_v1"], 210.5, -12.25) / 3.6e6
    assert abs(sep - np.hypot(*g.WFI_CEN_V2V3) / 3600.0) < 1e-3


def test_velocity_aberration_scales_about_reference():
    base = g.pointing_for(0.0, 0.0, 0.0)
    scaled = g.pointing_for(0.0, 0.0, 0.0, va_scale=1.001)
    v2 = np.array([g.WFI_CEN_V2V3[0], g.WFI_CEN_V2V3[0] + 100.0])
    v3 = np.array([g.WFI_CEN_V2V3[1], g.WFI_CEN_V2V3[1]])
    ra0, dec0 = g.v2v3_to_world(v2, v3, base)
    ra1, dec1 = g.v2v3_to_world(v2, v3, scaled)
    assert _sep_mas(ra0[0], dec0[0], ra1[0], dec1[0]) < 1e-6
    assert abs(_sep_mas(ra0[1], dec0[1], ra1[1], dec1[1]) - 100.0) < 1.0  # 0.1 arcsec = 100 mas


def test_bad_input_errors():
    with pytest.raises(RomanflowError):
        g.distortion_transform("WFI19")
    with pytest.raises(RomanflowError):
        g.pointing_from_meta({"wcsinfo": {"ra_ref": 1.0}})
    with pytest.raises(RomanflowError):
        g.pointing_for(0.0, 95.0, 0.0)
    with pytest.raises(RomanflowError):
        g.distortion_transform("WFI01", 5000)
