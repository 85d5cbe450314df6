"""The fast detector projection: round trips, agreement with gwcs, coverage of the field."""

import numpy as np

from geometry_helpers import sep_mas
from romanflow import geometry as g
from romanflow.detector import DETECTORS, SMALL_SCIENCE_SIZE


def test_round_trip():
    rng = np.random.default_rng(1)
    pointing = g.pointing_for(80.0, -30.0, 123.0, va_scale=1.0001)
    x = rng.uniform(-0.5, 4087.5, 2000)
    y = rng.uniform(-0.5, 4087.5, 2000)
    for name in ("WFI01", "WFI09", "WFI18"):
        proj = g.DetectorProjection(name, pointing)
        ra, dec = proj.pixel_to_world(x, y)
        xb, yb = proj.world_to_pixel(ra, dec)
        assert np.abs(xb - x).max() < 1e-4 and np.abs(yb - y).max() < 1e-4, f"{name}: x or y off by > 1e-4 pixel"
        xv, yv = proj.v2v3_to_pixel(*proj.pixel_to_v2v3(x, y))
        assert np.abs(xv - x).max() < 1e-6 and np.abs(yv - y).max() < 1e-6, f"{name}: x or y off by > 1e-6 pixel"


def test_gwcs_and_fast_projection_agree():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 4087, 500)
    y = rng.uniform(0, 4087, 500)
    for pointing in (g.pointing_for(359.9, 0.1, 17.0), g.pointing_for(45.0, 89.7, 200.0, va_scale=0.9999)):
        for name in DETECTORS:
            ra_w, dec_w = g.detector_gwcs(name, pointing)(x, y)
            ra_f, dec_f = g.DetectorProjection(name, pointing).pixel_to_world(x, y)
            # measured at most 6.7e-4 mas over both pointings and all detectors
            assert sep_mas(ra_w, dec_w, ra_f, dec_f).max() < 0.01, f"{name}: gwcs and fast path > 0.01 mas apart"


def test_small_detector_is_central_patch():
    size = SMALL_SCIENCE_SIZE
    o = (4088 - size) / 2
    x = np.array([0.0, 10.5, size - 1.0])
    y = np.array([0.0, 100.0, size - 1.0])
    pointing = g.pointing_for(10.0, 10.0, 10.0)
    proj = g.DetectorProjection("WFI11", pointing, size)
    ra, dec = proj.pixel_to_world(x, y)
    ra_full, dec_full = g.DetectorProjection("WFI11", pointing).pixel_to_world(x + o, y + o)
    assert sep_mas(ra, dec, ra_full, dec_full).max() < 1e-6, "patch and full detector > 1e-6 mas apart"


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
