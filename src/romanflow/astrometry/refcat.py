"""Astrometric reference catalogs in Gaia DR3 column conventions.

A reference catalog is a Parquet file with at least ``ra``, ``dec`` (deg, ICRS,
at ``ref_epoch``) and optionally ``ra_error``, ``dec_error`` (mas), ``pmra``
(µα·cos δ, mas/yr), ``pmdec`` (mas/yr), ``pmra_error``, ``pmdec_error``,
``parallax`` (mas), ``ref_epoch`` (Julian year, Gaia DR3: 2016.0) and
``phot_g_mean_mag``. Positions are propagated to the exposure epoch linearly
with the proper motion; the annual parallax displacement (≤ the parallax, a few
mas at most for reference stars) is not applied.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from romanflow.errors import InputFileError, RomanflowError
from romanflow.kernels.sky_projection import angular_separation

REQUIRED_COLUMNS = ("ra", "dec")
OPTIONAL_COLUMNS = {
    "ra_error": 0.0, "dec_error": 0.0, "pmra": 0.0, "pmdec": 0.0, "pmra_error": 0.0, "pmdec_error": 0.0,
    "parallax": 0.0, "ref_epoch": 2016.0, "phot_g_mean_mag": np.nan,
}
UNITS = {
    "ra": "deg", "dec": "deg", "ra_error": "mas", "dec_error": "mas", "pmra": "mas/yr", "pmdec": "mas/yr",
    "pmra_error": "mas/yr", "pmdec_error": "mas/yr", "parallax": "mas", "ref_epoch": "yr",
    "phot_g_mean_mag": "mag",
}


def read_refcat(path, *, center=None, radius_deg: float | None = None) -> pd.DataFrame:
    """Read a reference catalog (Parquet) with Gaia DR3 columns.

    Parameters
    ----------
    path : str or Path
    center : (ra, dec) deg, optional
    radius_deg : float, optional
        Keep only stars within this distance of ``center``.

    Returns
    -------
    pandas.DataFrame with every column of :data:`OPTIONAL_COLUMNS` present
    (missing ones filled: zero errors and motions, ``ref_epoch`` 2016.0).
    """
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise InputFileError(path, "reference catalog not found") from None
    except Exception as exc:  # pyarrow/pandas raise many kinds for a file that is not Parquet: name the file
        raise InputFileError(path, f"not a readable Parquet reference catalog: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputFileError(path, f"reference catalog lacks column(s) {', '.join(missing)}")
    for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS):
        if name in df.columns:
            try:
                df[name] = pd.to_numeric(df[name], errors="raise").astype(float)
            except (TypeError, ValueError):
                raise InputFileError(path, f"reference catalog column {name} is not numeric") from None
    ra, dec = df["ra"].to_numpy(float), df["dec"].to_numpy(float)
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0))
    if bad.any():
        raise InputFileError(path, f"reference catalog has {int(bad.sum())} of {len(df)} rows with NaN, infinite "
                                   "or out-of-range ra/dec")
    if len(df) == 0:
        raise InputFileError(path, "reference catalog has no rows")
    df = complete_columns(df)
    if center is not None and radius_deg is not None:
        df = df[angular_separation(df["ra"].to_numpy(), df["dec"].to_numpy(), *center) <= radius_deg]
        df = df.reset_index(drop=True)
    return df


def complete_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Copy with every optional Gaia column present; missing values become the defaults."""
    df = df.reset_index(drop=True).copy()
    for name, default in OPTIONAL_COLUMNS.items():
        if name not in df.columns:
            df[name] = default
        df[name] = df[name].astype(float).fillna(default)
    return df


def write_refcat(df: pd.DataFrame, path) -> None:
    """Write a reference catalog to Parquet (atomic), with units as Arrow field metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from romanflow.formats.asdf_io import atomic_path

    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise RomanflowError(f"reference catalog lacks column(s) {', '.join(missing)}")
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    fields = [f.with_metadata({"unit": UNITS[f.name]}) if f.name in UNITS else f for f in table.schema]
    table = table.cast(pa.schema(fields, metadata=table.schema.metadata))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def decimal_year(time) -> float:
    """Julian year (e.g. 2027.5) of an astropy Time, an ISO string or an MJD number."""
    from astropy.time import Time

    if isinstance(time, Time):
        t = time
    elif isinstance(time, (int, float, np.floating, np.integer)):
        t = Time(float(time), format="mjd", scale="utc")
    else:
        t = Time(time, scale="utc")
    return float(t.jyear)


def refcat_at_epoch(df: pd.DataFrame, epoch: float) -> pd.DataFrame:
    """Positions and errors propagated from ``ref_epoch`` to ``epoch`` (Julian year).

    Returns a copy with ``ra``, ``dec`` moved by the proper motion and
    ``ra_error``, ``dec_error`` (mas) grown by the proper-motion errors.
    """
    out = complete_columns(df)
    dt = float(epoch) - out["ref_epoch"].to_numpy(dtype=float)
    dec = out["dec"].to_numpy(dtype=float)
    cosd = np.maximum(np.cos(np.radians(dec)), 1e-9)
    out["ra"] = (out["ra"].to_numpy(dtype=float) + out["pmra"].to_numpy(dtype=float) * dt / 3.6e6 / cosd) % 360.0
    out["dec"] = dec + out["pmdec"].to_numpy(dtype=float) * dt / 3.6e6
    out["ra_error"] = np.hypot(out["ra_error"].to_numpy(dtype=float), out["pmra_error"].to_numpy(dtype=float) * dt)
    out["dec_error"] = np.hypot(out["dec_error"].to_numpy(dtype=float),
                                out["pmdec_error"].to_numpy(dtype=float) * dt)
    out["ref_epoch"] = float(epoch)
    return out
