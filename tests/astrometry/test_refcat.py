"""Reference catalogs: Gaia DR3 columns, epoch propagation, file errors."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.time import Time

from romanflow.astrometry.refcat import decimal_year, read_refcat, refcat_at_epoch, write_refcat
from romanflow.errors import InputFileError, RomanflowError


def test_round_trip_defaults_and_cone(tmp_path):
    df = pd.DataFrame({"ra": [10.0, 10.5, 30.0], "dec": [0.0, 0.1, 0.0], "pmra": [1.0, np.nan, 0.0]})
    path = tmp_path / "ref.parquet"
    write_refcat(df, path)
    assert pq.read_schema(path).field("ra").metadata[b"unit"] == b"deg"
    back = read_refcat(path)
    assert list(back["pmra"]) == [1.0, 0.0, 0.0]  # missing proper motion means none
    assert np.all(back["ref_epoch"] == 2016.0) and np.all(back["ra_error"] == 0.0)
    near = read_refcat(path, center=(10.2, 0.0), radius_deg=1.0)
    assert len(near) == 2


def test_proper_motion_propagation():
    df = pd.DataFrame({"ra": [100.0], "dec": [60.0], "pmra": [1000.0], "pmdec": [-500.0],
                       "pmra_error": [0.1], "ra_error": [0.2], "ref_epoch": [2016.0]})
    out = refcat_at_epoch(df, 2026.0)
    # 10 yr: 10 arcsec along RA (great circle) and -5 arcsec in Dec; measured errors 8e-9 and 4e-9 mas
    # (float64 resolves 5e-8 mas at RA 100 deg)
    assert abs((out["ra"][0] - 100.0) * np.cos(np.radians(60.0)) * 3.6e6 - 10000.0) < 1e-6  # mas
    assert abs((out["dec"][0] - 60.0) * 3.6e6 + 5000.0) < 1e-6  # mas
    assert abs(out["ra_error"][0] - np.hypot(0.2, 1.0)) < 1e-12  # mas
    # Julian years: J2026.0 is 2026-01-01T00:00 TT and J2000.0 is MJD 51544.5 (measured: both exact)
    seconds_per_year = 365.25 * 86400.0
    assert abs(decimal_year(Time("2026-01-01T00:00:00", scale="tt")) - 2026.0) * seconds_per_year < 1e-3
    assert abs(decimal_year(51544.5) - 2000.0) * seconds_per_year < 1e-3


def test_bad_files(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_refcat(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(InputFileError, match="bad.parquet"):
        read_refcat(bad)
    nocols = tmp_path / "nocols.parquet"
    pd.DataFrame({"x": [1.0]}).to_parquet(nocols)
    with pytest.raises(InputFileError, match="ra, dec"):
        read_refcat(nocols)
    with pytest.raises(RomanflowError):
        write_refcat(pd.DataFrame({"x": [1.0]}), tmp_path / "w.parquet")


def test_unusable_positions_and_columns_name_the_file(tmp_path):
    nan = tmp_path / "nan.parquet"
    pd.DataFrame({"ra": [10.0, np.nan], "dec": [0.0, 0.1]}).to_parquet(nan)
    with pytest.raises(InputFileError, match="nan.parquet.*1 of 2 rows"):
        read_refcat(nan)
    text = tmp_path / "text.parquet"
    pd.DataFrame({"ra": [10.0], "dec": [0.0], "pmra": ["fast"]}).to_parquet(text)
    with pytest.raises(InputFileError, match="text.parquet.*pmra is not numeric"):
        read_refcat(text)
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"ra": np.zeros(0), "dec": np.zeros(0)}).to_parquet(empty)
    with pytest.raises(InputFileError, match="no rows"):
        read_refcat(empty)
