"""Astronomical scenes: stars and galaxies with AB magnitudes per optical element.

A :class:`Scene` is a table with one row per source:

``source_id``
    integer identifier.
``type``
    ``'star'``, ``'sersic'`` (single Sersic galaxy) or ``'bulge_disk'``
    (de Vaucouleurs bulge plus exponential disk). ``'galaxy'`` in a user
    catalog means ``bulge_disk`` when ``bulge_fraction`` is given, else ``sersic``.
``ra``, ``dec``
    position (deg, ICRS) at ``epoch`` (Julian year; 2016.0 by default).
``pmra``, ``pmdec``
    proper motion (mas/yr; ``pmra`` includes cos δ), stars only (0 for galaxies).
``parallax``
    (mas), stars only.
``mag_<FILTER>``
    AB magnitude in each optical element (``mag_F158`` …).
galaxy shape
    ``half_light_radius`` (arcsec, the whole galaxy for ``sersic``, the disk
    for ``bulge_disk``), ``sersic_n``, ``axis_ratio`` (b/a), ``position_angle``
    (deg, east of north), ``bulge_fraction`` and ``bulge_half_light_radius``
    (arcsec) for ``bulge_disk``.

Scenes are generated (:func:`random_scene`) with number counts rising with
magnitude (stars ~0.3 dex/mag, galaxies ~0.4 dex/mag), or read from a user
catalog (:func:`read_scene`: Parquet, CSV or ECSV). A catalog in the I-Sim
(romanisim) convention is read as well (:func:`from_isim_table`): ``type``
``PSF``/``SER``, ``n``, ``half_light_radius`` (arcsec), ``pa`` (deg, east of north),
``ba`` and one flux column per filter named by the filter (``F158``) in maggies
(AB flux / 3631 Jy, so ``mag = -2.5 log10(flux)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from romanflow.detector import IMAGING_FILTERS
from romanflow.errors import InputFileError, RomanflowError

#: Effective wavelength of each imaging filter (micron), for smooth colours.
FILTER_WAVELENGTH_UM = {
    "F062": 0.62, "F087": 0.87, "F106": 1.06, "F129": 1.29,
    "F146": 1.46, "F158": 1.58, "F184": 1.84, "F213": 2.13,
}
GAIA_REF_EPOCH = 2016.0
SOURCE_TYPES = ("star", "sersic", "bulge_disk")
SHAPE_COLUMNS = ("half_light_radius", "sersic_n", "axis_ratio", "position_angle",
                 "bulge_fraction", "bulge_half_light_radius")

#: Default source density (per arcmin²) behind ``n_sources=None``: galaxies and stars
#: down to AB 27 at high galactic latitude.
DEFAULT_DENSITY_PER_ARCMIN2 = 150.0


@dataclass
class Scene:
    """A table of sources (see the module docstring for the columns)."""

    table: pd.DataFrame

    def __len__(self) -> int:
        return len(self.table)

    def magnitudes(self, optical_element: str) -> np.ndarray:
        """AB magnitudes in one optical element (raises if the scene has none)."""
        column = f"mag_{optical_element.upper()}"
        if column not in self.table:
            have = ", ".join(c for c in self.table.columns if c.startswith("mag_")) or "none"
            raise RomanflowError(f"scene has no magnitudes for {optical_element} ({column}); it has: {have}")
        return self.table[column].to_numpy(dtype=float)

    def positions_at(self, epoch: float) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec (deg) at a Julian epoch, propagating proper motion linearly."""
        t = self.table
        dt = epoch - t["epoch"].to_numpy(dtype=float)
        dec = t["dec"].to_numpy(dtype=float) + t["pmdec"].to_numpy(dtype=float) * dt / 3.6e6
        cosd = np.cos(np.radians(t["dec"].to_numpy(dtype=float)))
        ra = t["ra"].to_numpy(dtype=float) + t["pmra"].to_numpy(dtype=float) * dt / 3.6e6 / np.maximum(cosd, 1e-9)
        return np.mod(ra, 360.0), dec


def _colour_offsets(colour: np.ndarray) -> dict[str, np.ndarray]:
    """Magnitude offsets from F158 for a colour (F062 − F158), smooth in log wavelength."""
    span = np.log10(FILTER_WAVELENGTH_UM["F158"] / FILTER_WAVELENGTH_UM["F062"])
    return {f: colour * np.log10(FILTER_WAVELENGTH_UM["F158"] / w) / span for f, w in FILTER_WAVELENGTH_UM.items()}


def _power_law_mags(rng, n, slope_dex, bright, faint):
    """Magnitudes with dN/dm ∝ 10^(slope·m) between ``bright`` and ``faint``."""
    lo, hi = 10.0 ** (slope_dex * bright), 10.0 ** (slope_dex * faint)
    return np.log10(lo + rng.random(n) * (hi - lo)) / slope_dex


def _random_in_cap(rng, n, ra0, dec0, radius_deg):
    """Uniform positions within ``radius_deg`` of (ra0, dec0) (deg)."""
    cos_r = np.cos(np.radians(radius_deg))
    z = rng.uniform(cos_r, 1.0, n)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    s = np.sqrt(1 - z * z)
    # around the pole, then rotate the pole to (ra0, dec0)
    v = np.stack([s * np.cos(phi), s * np.sin(phi), z])
    a, d = np.radians(ra0), np.radians(dec0)
    rot_y = np.array([[np.sin(d), 0, np.cos(d)], [0, 1, 0], [-np.cos(d), 0, np.sin(d)]])
    rot_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    x, y, zz = rot_z @ rot_y @ v
    return np.mod(np.degrees(np.arctan2(y, x)), 360.0), np.degrees(np.arcsin(np.clip(zz, -1, 1)))


def random_scene(ra: float, dec: float, radius_deg: float, *, n_sources: int | None = None,
                 density_per_arcmin2: float | None = None, star_fraction: float = 0.1,
                 faint_limit: float = 27.0, seed: int = 0) -> Scene:
    """Draw a random field of stars and galaxies.

    Parameters
    ----------
    ra, dec : float
        Field centre (deg).
    radius_deg : float
        Radius of the circular field (deg).
    n_sources : int, optional
        Number of sources in the field. Overrides ``density_per_arcmin2``.
    density_per_arcmin2 : float, optional
        Sources per arcmin² (default :data:`DEFAULT_DENSITY_PER_ARCMIN2`).
    star_fraction : float
        Fraction of the sources that are stars.
    faint_limit : float
        Faintest F158 AB magnitude drawn.
    seed : int
        Random seed; the same seed gives the same scene.

    Notes
    -----
    Stars: F158 from 15 to ``faint_limit`` with counts rising 0.3 dex/mag,
    colours F062 − F158 in [0.3, 2.5], proper motions ~N((−2, −3), 5) mas/yr and
    parallaxes 0.1–3 mas. Galaxies: F158 from 18 to ``faint_limit`` rising
    0.4 dex/mag, half-light radii shrinking with magnitude (0.3″ at AB 22,
    0.25 dex scatter), half Sersic (n 0.7–4) and half bulge+disk.
    """
    if n_sources is None:
        density = DEFAULT_DENSITY_PER_ARCMIN2 if density_per_arcmin2 is None else density_per_arcmin2
        area_arcmin2 = 2 * np.pi * (1 - np.cos(np.radians(radius_deg))) * (180 / np.pi * 60) ** 2
        n_sources = int(round(density * area_arcmin2))
    if n_sources < 0 or not 0 <= star_fraction <= 1:
        raise RomanflowError("n_sources must be >= 0 and star_fraction within [0, 1]")
    rng = np.random.default_rng([int(seed), 0x5CE4E])
    n_star = int(rng.binomial(n_sources, star_fraction))
    n_gal = n_sources - n_star
    ra_all, dec_all = _random_in_cap(rng, n_sources, ra, dec, radius_deg)

    mag158 = np.concatenate([_power_law_mags(rng, n_star, 0.3, 15.0, faint_limit),
                             _power_law_mags(rng, n_gal, 0.4, 18.0, faint_limit)])
    colour = np.concatenate([rng.uniform(0.3, 2.5, n_star), rng.uniform(0.2, 2.0, n_gal)])
    is_star = np.arange(n_sources) < n_star
    gal_kind = np.where(rng.random(n_sources) < 0.5, "sersic", "bulge_disk")
    table = pd.DataFrame({
        "source_id": np.arange(n_sources, dtype=np.int64),
        "type": np.where(is_star, "star", gal_kind),
        "ra": ra_all,
        "dec": dec_all,
        "epoch": np.full(n_sources, GAIA_REF_EPOCH),
        "pmra": np.where(is_star, rng.normal(-2.0, 5.0, n_sources), 0.0),
        "pmdec": np.where(is_star, rng.normal(-3.0, 5.0, n_sources), 0.0),
        "parallax": np.where(is_star, 10.0 ** rng.uniform(-1.0, 0.5, n_sources), 0.0),
    })
    for f, offset in _colour_offsets(colour).items():
        table[f"mag_{f}"] = mag158 + offset
    hlr = 0.3 * 10.0 ** (-0.1 * (mag158 - 22.0) + rng.normal(0.0, 0.25, n_sources))
    table["half_light_radius"] = np.where(is_star, 0.0, np.clip(hlr, 0.03, 3.0))
    table["sersic_n"] = np.where(is_star, 0.0, rng.uniform(0.7, 4.0, n_sources))
    table["axis_ratio"] = np.where(is_star, 1.0, rng.uniform(0.25, 1.0, n_sources))
    table["position_angle"] = rng.uniform(0.0, 180.0, n_sources)
    table["bulge_fraction"] = np.where(table["type"] == "bulge_disk", rng.uniform(0.05, 0.6, n_sources), 0.0)
    table["bulge_half_light_radius"] = np.where(table["type"] == "bulge_disk",
                                                table["half_light_radius"] * rng.uniform(0.2, 0.6, n_sources), 0.0)
    return Scene(table)


#: Magnitude given to a source of zero or negative flux in an I-Sim catalog (contributes nothing).
FAINTEST_MAG = 60.0


def is_isim_table(df: pd.DataFrame) -> bool:
    """True for a table in the I-Sim convention: filter-named flux columns and no ``mag_*`` column."""
    columns = [str(c) for c in df.columns]
    return (not any(c.startswith("mag_") for c in columns)
            and any(c.upper() in IMAGING_FILTERS for c in columns))


def from_isim_table(df: pd.DataFrame, path=None) -> pd.DataFrame:
    """Translate an I-Sim (romanisim) catalog into this module's columns.

    ``PSF`` rows become stars, ``SER`` rows Sersic galaxies (``n`` -> ``sersic_n``,
    ``ba`` -> ``axis_ratio``, ``pa`` -> ``position_angle``, ``half_light_radius`` kept);
    each filter-named flux column (maggies) becomes ``mag_<FILTER>``; a flux <= 0 becomes
    :data:`FAINTEST_MAG`. Positions are taken at the default epoch, without motion.
    """
    out = pd.DataFrame({"ra": df["ra"].astype(float), "dec": df["dec"].astype(float)})
    kind = df["type"].astype(str).str.strip().str.upper() if "type" in df else pd.Series("PSF", index=df.index)
    bad = sorted(set(kind) - {"PSF", "SER"})
    if bad:
        raise InputFileError(path, f"unknown source type(s) {bad} in an I-Sim catalog: expected PSF or SER")
    out["type"] = np.where(kind == "SER", "sersic", "star")
    galaxy = (kind == "SER").to_numpy()
    for isim, ours, default in (("half_light_radius", "half_light_radius", 0.0), ("n", "sersic_n", 1.0),
                                ("ba", "axis_ratio", 1.0), ("pa", "position_angle", 0.0)):
        values = df[isim].astype(float).to_numpy() if isim in df else np.full(len(df), default)
        out[ours] = np.where(galaxy, values, default)
    for column in df.columns:
        name = str(column).upper()
        if name in IMAGING_FILTERS:
            flux = df[column].astype(float).to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                mag = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1.0)), FAINTEST_MAG)
            out["mag_" + name] = mag
    return out


def _normalise_table(df: pd.DataFrame, path) -> pd.DataFrame:
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    if is_isim_table(df):
        for column in ("ra", "dec"):
            if column not in df:
                raise InputFileError(path, f"catalog has no '{column}' column")
        df = from_isim_table(df, path)
    for column in ("ra", "dec"):
        if column not in df:
            raise InputFileError(path, f"catalog has no '{column}' column")
    mags = [c for c in df.columns if c.startswith("mag_")]
    if not mags:
        raise InputFileError(path, "catalog has no magnitude column (mag_<FILTER>, e.g. mag_F158)")
    for c in mags:
        if c[4:].upper() not in IMAGING_FILTERS:
            raise InputFileError(path, f"column {c}: unknown filter (expected one of {', '.join(IMAGING_FILTERS)})")
        df = df.rename(columns={c: "mag_" + c[4:].upper()})
    n = len(df)
    if "source_id" not in df:
        df["source_id"] = np.arange(n, dtype=np.int64)
    kind = df["type"].astype(str).str.lower().to_numpy() if "type" in df else np.full(n, "star", dtype=object)
    if "bulge_fraction" in df:
        galaxy = np.where(df["bulge_fraction"].fillna(0).to_numpy() > 0, "bulge_disk", "sersic")
    else:
        galaxy = np.full(n, "sersic")
    kind = np.where(kind == "galaxy", galaxy, kind)
    bad = sorted(set(kind) - set(SOURCE_TYPES))
    if bad:
        raise InputFileError(path, f"unknown source type(s) {bad}: expected star, galaxy, sersic or bulge_disk")
    df["type"] = kind
    defaults = {"epoch": GAIA_REF_EPOCH, "pmra": 0.0, "pmdec": 0.0, "parallax": 0.0, "half_light_radius": 0.0,
                "sersic_n": 1.0, "axis_ratio": 1.0, "position_angle": 0.0, "bulge_fraction": 0.0,
                "bulge_half_light_radius": 0.0}
    for column, value in defaults.items():
        if column not in df:
            df[column] = value
        df[column] = df[column].astype(float).fillna(value)
    galaxies = df["type"] != "star"
    if (galaxies & ~(df["half_light_radius"] > 0)).any():
        raise InputFileError(path, "galaxies need a positive half_light_radius (arcsec)")
    if ((df["type"] == "sersic") & ~df["sersic_n"].between(0.3, 6.2)).any():
        raise InputFileError(path, "sersic_n must lie within [0.3, 6.2]")
    if (galaxies & ~df["axis_ratio"].between(0.05, 1.0)).any():
        raise InputFileError(path, "axis_ratio must lie within [0.05, 1]")
    bd = df["type"] == "bulge_disk"
    df.loc[bd & ~(df["bulge_half_light_radius"] > 0), "bulge_half_light_radius"] = \
        0.4 * df.loc[bd & ~(df["bulge_half_light_radius"] > 0), "half_light_radius"]
    return df.reset_index(drop=True)


#: ECSV datatypes read by the fast reader, as numpy dtypes (other columns: astropy's reader).
_ECSV_DTYPES = {name: np.dtype(name) for name in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "float16", "float32", "float64")}


def _read_ecsv(path) -> pd.DataFrame:
    """An ECSV table as a DataFrame, as ``astropy.table.Table.read(...).to_pandas()`` makes it.

    Plain tables (scalar columns of the numeric, bool and string datatypes, no missing value,
    one delimiter character) are parsed by pyarrow, numbers through float64 or int64 as numpy
    converts them; anything else, and any file pyarrow cannot parse, by astropy.
    """
    table = _read_plain_ecsv(path)
    if table is not None:
        return table
    from astropy.table import Table

    return Table.read(path, format="ascii.ecsv").to_pandas()


def _read_plain_ecsv(path) -> pd.DataFrame | None:
    """Fast path of :func:`_read_ecsv`; None for a table it leaves to astropy."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import yaml

    header = []
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.startswith(b"#"):
                names_line = raw.decode("utf-8", errors="replace").strip()
                break
            header.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        else:
            return None
    if not header or not header[0].startswith("# %ECSV") or len(header) < 2 or header[1].strip() != "# ---":
        return None
    try:
        meta = yaml.safe_load("\n".join(line[2:] for line in header[2:]))
    except yaml.YAMLError:
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("datatype"), list):
        return None
    delimiter = meta.get("delimiter", " ")
    columns = meta["datatype"]
    if delimiter not in (" ", ",") or not all(isinstance(c, dict) and set(c) <= {"name", "datatype", "unit",
                                                                               "description", "format", "meta"}
                                              for c in columns):
        return None
    names = [str(c.get("name")) for c in columns]
    kinds = [c.get("datatype") for c in columns]
    if names_line.split(delimiter) != names or len(set(names)) != len(names) \
            or not all(k == "string" or k in _ECSV_DTYPES for k in kinds):
        return None
    parse_as = {"string": pa.string(), "bool": pa.bool_()}
    column_types = {n: parse_as.get(k, pa.float64() if k.startswith("float") else pa.int64())
                    for n, k in zip(names, kinds)}
    try:
        data = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(skip_rows=len(header) + 1, column_names=names, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"', double_quote=True),
            convert_options=pacsv.ConvertOptions(column_types=column_types, null_values=[""],
                                                 strings_can_be_null=True, quoted_strings_can_be_null=False,
                                                 true_values=["True", "1"], false_values=["False", "0"]))
    except (pa.ArrowException, OSError, ValueError):
        return None
    out = {}
    for name, kind in zip(names, kinds):
        column = data.column(name)
        if column.null_count:
            return None
        values = column.to_numpy(zero_copy_only=False)
        if kind == "string":
            values = values.astype(str)
        elif kind != "bool":
            dtype = _ECSV_DTYPES[kind]
            if dtype.kind in "iu" and values.size and (values.min() < np.iinfo(dtype).min
                                                        or values.max() > np.iinfo(dtype).max):
                return None
            values = values.astype(dtype)
        out[name] = values
    return pd.DataFrame(out, columns=names)


def read_scene(path) -> Scene:
    """Read a source catalog (Parquet, CSV or ECSV) into a :class:`Scene`.

    Required columns: ``ra``, ``dec`` (deg) and at least one ``mag_<FILTER>``.
    Optional: ``type`` (star/galaxy/sersic/bulge_disk; star by default), shape
    parameters, ``pmra``/``pmdec`` (mas/yr), ``parallax`` (mas), ``epoch``.
    A catalog in the I-Sim convention (see the module notes) is translated by
    :func:`from_isim_table`.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif suffix == ".ecsv":
            df = _read_ecsv(path)
        elif suffix in (".csv", ".txt"):
            df = pd.read_csv(path)
        else:
            raise InputFileError(path, f"unknown catalog format '{suffix}': use .parquet, .csv or .ecsv")
    except InputFileError:
        raise
    except Exception as exc:  # pandas/pyarrow/astropy raise many kinds for an unreadable table: name the file
        raise InputFileError(path, f"cannot read catalog: {str(exc).splitlines()[0][:200]}") from None
    return Scene(_normalise_table(df, path))


# Gaia DR3 position uncertainty (mas) against G (typical values).
_GAIA_ERR_G = np.array([12.0, 15.0, 17.0, 18.0, 19.0, 20.0, 21.0])
_GAIA_POS_ERR_MAS = np.array([0.01, 0.02, 0.05, 0.09, 0.18, 0.4, 1.0])


def gaia_catalog(scene: Scene, *, g_limit: float = 21.0, seed: int = 0) -> pd.DataFrame:
    """A Gaia DR3-like astrometric catalog of the scene's stars.

    Columns use the Gaia DR3 names: ``source_id``, ``ra``, ``dec``,
    ``ra_error``, ``dec_error`` (mas), ``pmra``, ``pmdec`` (mas/yr),
    ``pmra_error``, ``pmdec_error``, ``parallax``, ``parallax_error`` (mas),
    ``ref_epoch`` (2016.0), ``phot_g_mean_mag``. Positions are at 2016.0
    and perturbed by their errors, which grow with G as in DR3 (about 0.02 mas
    at G=15, 0.09 mas at 18, 0.4 mas at 20, 1 mas at 21; proper-motion errors
    1.1× that in mas/yr, parallax errors 1.3×). G is taken as F062 + 0.15.
    """
    t = scene.table
    stars = t[t["type"] == "star"]
    if "mag_F062" in stars:
        g = stars["mag_F062"].to_numpy(float) + 0.15
    else:
        mags = [c for c in stars.columns if c.startswith("mag_")]
        g = stars[mags[0]].to_numpy(float) + 0.5
    keep = g < g_limit
    stars, g = stars[keep], g[keep]
    ra, dec = Scene(stars).positions_at(GAIA_REF_EPOCH)
    rng = np.random.default_rng([int(seed), 0x6A1A])
    pos_err = 10.0 ** np.interp(g, _GAIA_ERR_G, np.log10(_GAIA_POS_ERR_MAS))  # mas
    pm_err = pos_err * 1.1
    plx_err = pos_err * 1.3
    n = len(stars)
    dra = rng.normal(0, 1, n) * pos_err
    ddec = rng.normal(0, 1, n) * pos_err
    cosd = np.cos(np.radians(dec))
    return pd.DataFrame({
        "source_id": stars["source_id"].to_numpy(np.int64),
        "ra": ra + dra / 3.6e6 / cosd,
        "dec": dec + ddec / 3.6e6,
        "ra_error": pos_err,
        "dec_error": pos_err,
        "pmra": stars["pmra"].to_numpy(float) + rng.normal(0, 1, n) * pm_err,
        "pmdec": stars["pmdec"].to_numpy(float) + rng.normal(0, 1, n) * pm_err,
        "pmra_error": pm_err,
        "pmdec_error": pm_err,
        "parallax": stars["parallax"].to_numpy(float) + rng.normal(0, 1, n) * plx_err,
        "parallax_error": plx_err,
        "ref_epoch": np.full(n, GAIA_REF_EPOCH),
        "phot_g_mean_mag": g,
    })
