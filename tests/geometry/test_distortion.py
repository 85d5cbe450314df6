"""Distortion polynomials: the shipped coefficients, detector layout, the astropy transform."""

import json

import numpy as np
import pytest

from romanflow import geometry as g
from romanflow.detector import DETECTORS, SMALL_SCIENCE_SIZE
from romanflow.errors import InputFileError, RomanflowError
from romanflow.geometry.galsim_fit import write_distortion_file


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


def test_transform_round_trip():
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, 4087.5, 2000)
    y = rng.uniform(-0.5, 4087.5, 2000)
    for name in ("WFI01", "WFI09", "WFI18"):
        model = g.distortion_transform(name)
        xc, yc = model.inverse(*model(x, y))
        assert np.abs(xc - x).max() < 1e-4 and np.abs(yc - y).max() < 1e-4, f"{name}: x or y off by > 1e-4 pixel"


def test_small_detector_transform_is_central_patch():
    size = SMALL_SCIENCE_SIZE
    o = (4088 - size) / 2
    x = np.array([0.0, 10.5, size - 1.0])
    y = np.array([0.0, 100.0, size - 1.0])
    small = g.distortion_transform("WFI11", size)
    full = g.distortion_transform("WFI11")
    np.testing.assert_allclose(small(x, y), full(x + o, y + o), atol=1e-9)  # arcsec


def test_shipped_file_records_its_derivation():
    header, table = g.read_distortion_file()
    assert header["fit_degree"] == g.POLY_DEGREE and header["inverse_degree"] == g.INVERSE_DEGREE
    assert header["galsim_version"] and header["derived"]
    assert header["fit_rms_mas_max"] == max(d.fit_rms_mas for d in table.values())
    assert set(table) == set(DETECTORS)
    for d in table.values():
        assert d.fx.shape == (g.POLY_DEGREE + 1,) * 2 and d.gx.shape == (g.INVERSE_DEGREE + 1,) * 2
        assert d.fx.dtype == np.float64 and d.fx.flags.c_contiguous


def test_written_file_reads_back_exactly(tmp_path):
    table = g.distortion_table()
    path = write_distortion_file(tmp_path / "d.json", table)
    _, back = g.read_distortion_file(path)
    for name in DETECTORS:
        for key in ("fx", "fy", "gx", "gy"):
            assert np.array_equal(getattr(back[name], key), getattr(table[name], key)), (name, key)
        assert (back[name].v2c, back[name].v3c) == (table[name].v2c, table[name].v3c)


def test_unusable_distortion_file_errors(tmp_path):
    with pytest.raises(InputFileError, match="missing"):
        g.read_distortion_file(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputFileError, match="not a readable"):
        g.read_distortion_file(tmp_path / "bad.json")
    tree = json.loads(g.DISTORTION_PATH.read_text())
    tree["fit_degree"] = 4
    del tree["detectors"]["WFI07"]
    (tmp_path / "other.json").write_text(json.dumps(tree))
    with pytest.raises(InputFileError, match="fit_degree=4.*WFI07"):
        g.read_distortion_file(tmp_path / "other.json")


def test_bad_distortion_input_errors():
    with pytest.raises(RomanflowError):
        g.distortion_transform("WFI19")
    with pytest.raises(RomanflowError):
        g.distortion_transform("WFI01", 5000)
