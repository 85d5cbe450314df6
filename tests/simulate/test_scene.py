"""Scenes: generated number counts, user catalogs, the Gaia-like catalog."""

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from romanflow.errors import InputFileError, RomanflowError
from romanflow.simulate.scene import (
    GAIA_REF_EPOCH,
    Scene,
    _read_ecsv,
    _read_plain_ecsv,
    gaia_catalog,
    random_scene,
    read_scene,
)


def _slope(mags, lo, hi):
    counts, edges = np.histogram(mags, bins=np.arange(lo, hi + 0.01, 1.0))
    centres = 0.5 * (edges[1:] + edges[:-1])
    return np.polyfit(centres, np.log10(counts), 1)[0]


def test_random_scene_counts_rise_with_magnitude():
    scene = random_scene(10.0, -20.0, 0.1, n_sources=60000, star_fraction=0.3, seed=1)
    t = scene.table
    assert len(scene) == 60000
    stars = t["type"] == "star"
    assert abs(stars.mean() - 0.3) < 0.01
    assert _slope(t.loc[stars, "mag_F158"], 17, 26) == pytest.approx(0.3, abs=0.03)
    assert _slope(t.loc[~stars, "mag_F158"], 19, 26) == pytest.approx(0.4, abs=0.03)
    # positions fill the cap uniformly
    sep = np.hypot((t["ra"] - 10.0) * np.cos(np.radians(-20.0)), t["dec"] + 20.0)
    assert sep.max() < 0.1001
    assert abs(np.mean(sep < 0.1 / np.sqrt(2)) - 0.5) < 0.01
    # galaxies only have shapes; stars only proper motions
    assert (t.loc[~stars, "half_light_radius"] > 0).all() and (t.loc[stars, "pmra"] != 0).all()
    assert (t.loc[~stars, "pmra"] == 0).all()


def test_random_scene_is_reproducible():
    a = random_scene(0.0, 0.0, 0.05, n_sources=500, seed=4).table
    b = random_scene(0.0, 0.0, 0.05, n_sources=500, seed=4).table
    c = random_scene(0.0, 0.0, 0.05, n_sources=500, seed=5).table
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ra"], c["ra"])


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".ecsv"])
def test_read_scene_formats(tmp_path, suffix):
    df = pd.DataFrame({
        "ra": [10.0, 10.01, 10.02], "dec": [-5.0, -5.0, -5.01],
        "type": ["star", "galaxy", "galaxy"],
        "mag_f158": [18.0, 21.0, 22.0], "mag_F106": [18.5, 21.4, 22.3],
        "half_light_radius": [0.0, 0.4, 0.3], "bulge_fraction": [0.0, 0.3, 0.0],
        "sersic_n": [1.0, 1.0, 2.0], "axis_ratio": [1.0, 0.5, 0.7],
    })
    path = tmp_path / f"cat{suffix}"
    if suffix == ".parquet":
        df.to_parquet(path)
    elif suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        Table.from_pandas(df).write(path, format="ascii.ecsv")
    scene = read_scene(path)
    assert scene.table["type"].tolist() == ["star", "bulge_disk", "sersic"]
    assert np.allclose(scene.magnitudes("F158"), [18.0, 21.0, 22.0])
    assert scene.table["epoch"].eq(GAIA_REF_EPOCH).all()
    with pytest.raises(RomanflowError, match=r"no magnitudes for F213 \(mag_F213\); it has: mag_"):
        scene.magnitudes("F213")


def test_read_scene_rejects_bad_catalogs(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"ra": [1.0], "mag_F158": [20.0]}).to_csv(bad, index=False)
    with pytest.raises(InputFileError, match="bad.csv.*'dec'"):
        read_scene(bad)
    nomag = tmp_path / "nomag.csv"
    pd.DataFrame({"ra": [1.0], "dec": [2.0]}).to_csv(nomag, index=False)
    with pytest.raises(InputFileError, match="magnitude"):
        read_scene(nomag)
    gal = tmp_path / "gal.csv"
    pd.DataFrame({"ra": [1.0], "dec": [2.0], "mag_F158": [20.0], "type": ["galaxy"]}).to_csv(gal, index=False)
    with pytest.raises(InputFileError, match="half_light_radius"):
        read_scene(gal)
    with pytest.raises(InputFileError, match="no such file"):
        read_scene(tmp_path / "missing.parquet")


def test_ecsv_tables_read_fast_are_the_tables_astropy_reads(tmp_path):
    table = Table({
        "ra": [10.0, 10.01, 10.02], "flag": [True, False, True], "kind": ["star", "spiral galaxy", "x"],
        "n": np.array([-3, 2, 300], "i2"), "count": np.array([1, 2, 4000000000], "u4"),
        "mag_F158": np.array([18.0, 21.5, 22.25], "f4"),
    })
    for delimiter in (" ", ","):
        path = tmp_path / f"plain{delimiter == ','}.ecsv"
        table.write(path, format="ascii.ecsv", delimiter=delimiter)
        fast = _read_plain_ecsv(path)
        assert fast is not None
        pd.testing.assert_frame_equal(fast, Table.read(path, format="ascii.ecsv").to_pandas(), check_exact=True)
    # float32 text is converted through float64 as numpy converts it: this value rounds to 1.0 that way,
    # to the next float32 when rounded once
    path = tmp_path / "rounding.ecsv"
    path.write_text("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: f, datatype: float32}\n# schema: astropy-2.0\n"
                    "f\n1.00000005960464477539062500000001\n")
    assert _read_plain_ecsv(path)["f"].iloc[0] == Table.read(path, format="ascii.ecsv")["f"][0] == np.float32(1.0)
    # a missing value is left to astropy, which masks it
    table["ra"] = np.ma.masked_array(table["ra"], [False, True, False])
    path = tmp_path / "masked.ecsv"
    table.write(path, format="ascii.ecsv")
    assert _read_plain_ecsv(path) is None
    pd.testing.assert_frame_equal(_read_ecsv(path), Table.read(path, format="ascii.ecsv").to_pandas())


def test_a_malformed_ecsv_catalog_is_one_error_line_naming_it(tmp_path):
    path = tmp_path / "broken.ecsv"
    Table({"ra": [1.0, 2.0], "dec": [3.0, 4.0], "mag_F158": [20.0, 21.0]}).write(path, format="ascii.ecsv")
    path.write_text(path.read_text() + "5.0 6.0\n")  # a row one value short
    with pytest.raises(InputFileError, match=r"broken\.ecsv: cannot read catalog") as caught:
        read_scene(path)
    assert "\n" not in str(caught.value)


def test_proper_motion_propagation():
    t = pd.DataFrame({"ra": [100.0], "dec": [60.0], "pmra": [3600.0], "pmdec": [-7200.0], "epoch": [2016.0]})
    ra, dec = Scene(t).positions_at(2026.0)
    # 10 yr: 36" along RA (great circle) and -72" in Dec; measured errors < 1e-8 mas (float64
    # resolves 5e-8 mas at RA 100 deg)
    assert abs((dec[0] - 60.0) * 3.6e6 - (-72000.0)) < 1e-6  # mas
    assert abs((ra[0] - 100.0) * np.cos(np.radians(60.0)) * 3.6e6 - 36000.0) < 1e-6  # mas


def test_gaia_catalog_columns_and_errors():
    scene = random_scene(30.0, 10.0, 0.2, n_sources=20000, star_fraction=0.5, seed=2)
    gaia = gaia_catalog(scene, seed=3)
    for column in ("ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "parallax", "ref_epoch",
                   "phot_g_mean_mag"):
        assert column in gaia
    assert (gaia["ref_epoch"] == 2016.0).all() and gaia["phot_g_mean_mag"].max() < 21.0
    bright = gaia["phot_g_mean_mag"] < 17
    faint = gaia["phot_g_mean_mag"] > 20
    assert gaia.loc[faint, "ra_error"].median() > 5 * gaia.loc[bright, "ra_error"].median()
    # the catalog positions scatter about the truth by the quoted errors
    truth = scene.table.set_index("source_id").loc[gaia["source_id"]]
    ddec = (gaia["dec"].to_numpy() - truth["dec"].to_numpy()) * 3.6e6 / gaia["dec_error"].to_numpy()
    assert np.std(ddec) == pytest.approx(1.0, abs=0.1)
