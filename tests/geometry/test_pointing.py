"""Pointing: construction, metadata, and the telescope-frame <-> sky rotation."""

import numpy as np
import pytest

from geometry_helpers import sep_mas
from romanflow import geometry as g
from romanflow.errors import RomanflowError


def test_roll_ref_is_position_angle_of_v3():
    pointing = g.pointing_for(20.0, 30.0, 40.0)
    ra, dec = g.v2v3_to_world(np.array([g.WFI_CEN_V2V3[0]] * 2),
                              np.array([g.WFI_CEN_V2V3[1], g.WFI_CEN_V2V3[1] + 1.0]), pointing)
    assert abs(ra[0] - 20.0) < 1e-9 and abs(dec[0] - 30.0) < 1e-9, "reference point off by > 1e-9 deg"
    east = (ra[1] - ra[0]) * np.cos(np.radians(dec[0]))
    north = dec[1] - dec[0]
    assert abs(np.degrees(np.arctan2(east, north)) - 40.0) < 1e-3, "PA of +V3 off by > 1e-3 deg"


def test_v2v3_world_round_trip():
    rng = np.random.default_rng(4)
    pointing = g.pointing_for(300.0, -70.0, 15.0, va_scale=1.0002)
    v2 = g.WFI_CEN_V2V3[0] + rng.uniform(-1500.0, 1500.0, 1000)
    v3 = g.WFI_CEN_V2V3[1] + rng.uniform(-1500.0, 1500.0, 1000)
    v2b, v3b = g.world_to_v2v3(*g.v2v3_to_world(v2, v3, pointing), pointing)
    assert np.abs(v2b - v2).max() < 1e-6 and np.abs(v3b - v3).max() < 1e-6, "V2 or V3 off by > 1e-6 arcsec"


def test_rotation_matrix_is_orthonormal_and_read_only():
    m = g.rotation_matrix(g.pointing_for(33.0, -20.0, 95.0))
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-14)
    assert not m.flags.writeable


def test_velocity_aberration_scales_about_reference():
    base = g.pointing_for(0.0, 0.0, 0.0)
    scaled = g.pointing_for(0.0, 0.0, 0.0, va_scale=1.001)
    v2 = np.array([g.WFI_CEN_V2V3[0], g.WFI_CEN_V2V3[0] + 100.0])
    v3 = np.array([g.WFI_CEN_V2V3[1], g.WFI_CEN_V2V3[1]])
    ra0, dec0 = g.v2v3_to_world(v2, v3, base)
    ra1, dec1 = g.v2v3_to_world(v2, v3, scaled)
    assert sep_mas(ra0[0], dec0[0], ra1[0], dec1[0]) < 1e-6, "reference point moved by > 1e-6 mas"
    assert abs(sep_mas(ra0[1], dec0[1], ra1[1], dec1[1]) - 100.0) < 1.0, "0.1 arcsec = 100 mas, within 1 mas"


def test_with_offsets_moves_on_the_sky():
    pointing = g.pointing_for(10.0, 60.0, 30.0)
    moved = pointing.with_offsets(3.0, -4.0, 0.5)
    assert abs(sep_mas(pointing.ra_ref, pointing.dec_ref, moved.ra_ref, moved.dec_ref) - 5000.0) < 1.0, \
        "a (3, -4) arcsec offset is 5000 mas, within 1 mas"
    assert moved.roll_ref == pytest.approx(30.5)


def test_bad_pointing_input_errors():
    with pytest.raises(RomanflowError):
        g.pointing_from_meta({"wcsinfo": {"ra_ref": 1.0}})
    with pytest.raises(RomanflowError):
        g.pointing_for(0.0, 95.0, 0.0)
