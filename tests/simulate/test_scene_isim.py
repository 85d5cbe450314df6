"""Catalogs in the I-Sim (romanisim) convention: PSF/SER rows with fluxes in maggies per filter."""

import numpy as np
import pytest
from astropy.table import Table

from romanflow.errors import InputFileError
from romanflow.simulate.scene import FAINTEST_MAG, read_scene


def _isim_table():
    t = Table()
    t["ra"] = [270.0, 270.01, 270.02]
    t["dec"] = [66.0, 66.01, 66.02]
    t["type"] = ["PSF", "SER", "PSF"]
    t["n"] = np.array([-1.0, 2.5, -1.0], "f4")
    t["half_light_radius"] = np.array([0.0, 0.4, 0.0], "f4")
    t["pa"] = np.array([0.0, 30.0, 0.0], "f4")
    t["ba"] = np.array([1.0, 0.6, 1.0], "f4")
    t["F158"] = np.array([10 ** (-20.0 / 2.5), 10 ** (-22.5 / 2.5), 0.0], "f4")
    t["F106"] = np.array([10 ** (-21.0 / 2.5), 10 ** (-23.0 / 2.5), 1e-9], "f4")
    return t


def test_isim_ecsv_catalog_is_translated(tmp_path):
    path = tmp_path / "isim.ecsv"
    _isim_table().write(path, format="ascii.ecsv")
    table = read_scene(path).table
    assert list(table["type"]) == ["star", "sersic", "star"]
    np.testing.assert_allclose(table["mag_F158"][:2], [20.0, 22.5], atol=1e-5)
    np.testing.assert_allclose(table["mag_F106"], [21.0, 23.0, 22.5], atol=1e-5)
    assert table["mag_F158"][2] == FAINTEST_MAG  # zero flux: contributes nothing
    galaxy = table.iloc[1]
    assert (galaxy["sersic_n"], galaxy["axis_ratio"]) == pytest.approx((2.5, 0.6))
    assert (galaxy["half_light_radius"], galaxy["position_angle"]) == pytest.approx((0.4, 30.0))
    assert table["half_light_radius"][0] == 0.0 and table["sersic_n"][0] == 1.0  # stars keep no shape


def test_isim_catalog_with_an_unknown_type_is_refused(tmp_path):
    t = _isim_table()
    t["type"] = ["PSF", "GAL", "PSF"]
    path = tmp_path / "bad.ecsv"
    t.write(path, format="ascii.ecsv")
    with pytest.raises(InputFileError, match="unknown source type"):
        read_scene(path)
