"""Declarative column definitions of romanflow's L4 source catalogs.

One list of column templates describes every catalog flavour. Templates hold
the placeholders ``<band>`` (lower-case filter name, e.g. ``f158``) and
``<radius>`` (aperture radius in tenths of an arcsecond, two digits, e.g.
``04`` for 0.4″); :func:`catalog_columns` expands them for a given set of
bands. Names follow the official Roman source-catalog conventions.

Catalog flavours
----------------
``detector``
    One detector's L2 image in one band (``image_flags`` from the DQ array).
``skycell``
    One L3 sky-cell mosaic in one band.
``multiband``
    Sources detected on a combined image, measured in every band.
``forced``
    Photometry at given sky positions (time-domain use).

Fluxes are in nJy, so ``m_AB = -2.5 log10(f / nJy) + 31.4``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from romanflow.errors import RomanflowError
from romanflow.kernels.psf_fit import FIT_FLAGS
from romanflow.source_flags import REGISTRY, SOURCE_FLAGS, legend

#: Aperture radii of the circular-aperture photometry (arcsec).
APERTURE_RADII_ARCSEC = (0.1, 0.2, 0.4, 0.8, 1.6)
#: Inner and outer radius of the local-background annulus (arcsec).
BACKGROUND_ANNULUS_ARCSEC = (2.4, 2.8)
#: AB magnitude of 1 nJy.
AB_ZEROPOINT_NJY = 31.4

CATALOG_KINDS = ("detector", "skycell", "multiband", "forced")

#: The :mod:`romanflow.source_flags` bits of ``warning_flags``, name -> value: EDGE (the largest aperture
#: leaves the image or enters masked pixels), BLENDED (the segment came from deblending a larger one),
#: SATURATED (a pixel of the segment is flagged saturated), PSF_FIT_FAILED (the PSF fit failed or was
#: rejected), LOW_SNR_KRON (Kron flux below 1 sigma).
WARNING_FLAGS = {name: SOURCE_FLAGS[name] for name in ("EDGE", "BLENDED", "SATURATED", "PSF_FIT_FAILED",
                                                         "LOW_SNR_KRON")}
#: The bits of ``warning_flags`` in forced photometry.
FORCED_WARNING_FLAGS = {name: SOURCE_FLAGS[name] for name in ("EDGE",)}
#: The bits of ``psf_flags_<band>``: those of a PSF fit.
PSF_FLAGS = {name: SOURCE_FLAGS[name] for name in FIT_FLAGS}


class CatalogSchemaError(RomanflowError):
    """A table does not match the catalog schema."""


@dataclass(frozen=True)
class ColumnSpec:
    """One catalog column.

    Attributes
    ----------
    name : str
        Column name (may hold ``<band>`` / ``<radius>`` in a template).
    dtype : str
        numpy dtype name (``float32``, ``float64``, ``int32``, ``int64``, ``bool``).
    unit : str or None
        astropy unit string; None for dimensionless quantities, labels and flags.
    description : str
        One-sentence meaning.
    ucd : str
        IVOA Unified Content Descriptor.
    """

    name: str
    dtype: str
    unit: str | None
    description: str
    ucd: str = ""

    def expand(self, band: str | None = None, radius: str | None = None) -> "ColumnSpec":
        name, description = self.name, self.description
        if band is not None:
            name = name.replace("<band>", band)
            description = description.replace("<band>", band.upper())
        if radius is not None:
            name = name.replace("<radius>", radius)
            description = description.replace("<radius>", f"{int(radius) / 10:.1f}")
        return ColumnSpec(name, self.dtype, self.unit, description, self.ucd)

    @property
    def per_band(self) -> bool:
        return "<band>" in self.name

    @property
    def per_radius(self) -> bool:
        return "<radius>" in self.name


def _c(name, dtype, unit, description, ucd=""):
    return ColumnSpec(name, dtype, unit, description, ucd)


# ---------------------------------------------------------------------------
# Column templates, in output order.
# ---------------------------------------------------------------------------

IDENTITY = [
    _c("label", "int32", None, "Label of the source segment in the segmentation image", "meta.id;meta.main"),
    _c("bbox_xmin", "int32", None, "Column index of the left edge of the segment bounding box (0-indexed)", "pos.cartesian.x;stat.min"),
    _c("bbox_xmax", "int32", None, "Column index of the right edge of the segment bounding box (0-indexed)", "pos.cartesian.x;stat.max"),
    _c("bbox_ymin", "int32", None, "Row index of the bottom edge of the segment bounding box (0-indexed)", "pos.cartesian.y;stat.min"),
    _c("bbox_ymax", "int32", None, "Row index of the top edge of the segment bounding box (0-indexed)", "pos.cartesian.y;stat.max"),
]

POSITION = [
    _c("x_centroid", "float32", "pix", "Column coordinate of the source centroid from image moments (0-indexed)", "pos.cartesian.x"),
    _c("y_centroid", "float32", "pix", "Row coordinate of the source centroid from image moments (0-indexed)", "pos.cartesian.y"),
    _c("x_centroid_err", "float32", "pix", "Uncertainty in x_centroid", "stat.error;pos.cartesian.x"),
    _c("y_centroid_err", "float32", "pix", "Uncertainty in y_centroid", "stat.error;pos.cartesian.y"),
    _c("ra", "float64", "deg", "Best estimate of the right ascension (ICRS): the first band's PSF fits on the exposures, else on the image, else the centroid", "pos.eq.ra;meta.main"),
    _c("dec", "float64", "deg", "Best estimate of the declination (ICRS): the first band's PSF fits on the exposures, else on the image, else the centroid", "pos.eq.dec;meta.main"),
    _c("ra_centroid", "float64", "deg", "Right ascension (ICRS) of the source centroid", "pos.eq.ra"),
    _c("dec_centroid", "float64", "deg", "Declination (ICRS) of the source centroid", "pos.eq.dec"),
    _c("ra_centroid_err", "float32", "arcsec", "Uncertainty in ra_centroid (along the RA great circle)", "stat.error;pos.eq.ra"),
    _c("dec_centroid_err", "float32", "arcsec", "Uncertainty in dec_centroid", "stat.error;pos.eq.dec"),
]

SHAPE = [
    _c("segment_area", "float32", "arcsec2", "Area of the source segment", "phys.area"),
    _c("semimajor", "float32", "arcsec", "Semimajor axis (1-sigma) from image moments", "phys.size.smajAxis"),
    _c("semiminor", "float32", "arcsec", "Semiminor axis (1-sigma) from image moments", "phys.size.sminAxis"),
    _c("ellipticity", "float32", None, "Ellipticity, 1 - semiminor / semimajor", "src.ellipticity"),
    _c("orientation_pix", "float32", "deg", "Angle counter-clockwise from the +x axis to the major axis", "pos.posAng;instr.det"),
    _c("orientation_sky", "float32", "deg", "Position angle of the major axis, from North through East", "pos.posAng"),
    _c("cxx", "float32", "arcsec-2", "Coefficient of x**2 in the ellipse equation cxx x**2 + cxy x y + cyy y**2 = R**2", "src.morph.param"),
    _c("cxy", "float32", "arcsec-2", "Coefficient of x*y in the ellipse equation", "src.morph.param"),
    _c("cyy", "float32", "arcsec-2", "Coefficient of y**2 in the ellipse equation", "src.morph.param"),
    _c("fwhm", "float32", "arcsec", "Circularised full width at half maximum from the moment axes", "phys.angSize"),
    _c("kron_radius", "float32", "arcsec", "Kron radius: first-moment radius measured on the detection image", "phys.angSize"),
]

PSF_POSITION = [
    _c("x_psf_<band>", "float32", "pix", "Column coordinate from the <band> PSF fit (0-indexed)", "pos.cartesian.x"),
    _c("y_psf_<band>", "float32", "pix", "Row coordinate from the <band> PSF fit (0-indexed)", "pos.cartesian.y"),
    _c("x_psf_<band>_err", "float32", "pix", "Uncertainty in x_psf_<band>", "stat.error;pos.cartesian.x"),
    _c("y_psf_<band>_err", "float32", "pix", "Uncertainty in y_psf_<band>", "stat.error;pos.cartesian.y"),
    _c("ra_psf_<band>", "float64", "deg", "Right ascension (ICRS) of the <band> PSF-fitted position", "pos.eq.ra"),
    _c("dec_psf_<band>", "float64", "deg", "Declination (ICRS) of the <band> PSF-fitted position", "pos.eq.dec"),
]

PHOTOMETRY = [
    _c("aper<radius>_<band>_flux", "float32", "nJy", "<band> flux in a circular aperture of radius <radius> arcsec (local background not subtracted)", "phot.flux"),
    _c("aper<radius>_<band>_flux_err", "float32", "nJy", "Uncertainty in aper<radius>_<band>_flux", "stat.error;phot.flux"),
    _c("aper_bkg_<band>_flux", "float32", "nJy arcsec-2", "<band> local background: sigma-clipped median in a 2.4-2.8 arcsec annulus (reported, not subtracted)", "phot.flux.sb;instr.skyLevel"),
    _c("aper_bkg_<band>_flux_err", "float32", "nJy arcsec-2", "Uncertainty in aper_bkg_<band>_flux", "stat.error;phot.flux.sb"),
    _c("segment_<band>_flux", "float32", "nJy", "<band> isophotal flux: sum over the source segment", "phot.flux"),
    _c("segment_<band>_flux_err", "float32", "nJy", "Uncertainty in segment_<band>_flux", "stat.error;phot.flux"),
    _c("kron_<band>_flux", "float32", "nJy", "<band> flux in the elliptical Kron aperture", "phot.flux"),
    _c("kron_<band>_flux_err", "float32", "nJy", "Uncertainty in kron_<band>_flux", "stat.error;phot.flux"),
    _c("kron_<band>_abmag", "float32", "mag(AB)", "<band> AB magnitude in the Kron aperture, -2.5 log10(kron flux / nJy) + 31.4", "phot.mag"),
    _c("kron_<band>_abmag_err", "float32", "mag(AB)", "Uncertainty in kron_<band>_abmag", "stat.error;phot.mag"),
    _c("psf_<band>_flux", "float32", "nJy", "<band> total flux from the PSF fit on the image (on a mosaic whose members are known: with the mosaic's own PSF at the best position, see docs/photometry.md)", "phot.flux"),
    _c("psf_<band>_flux_err", "float32", "nJy", "Uncertainty in psf_<band>_flux", "stat.error;phot.flux"),
    _c("psf_gof_<band>", "float32", None, "<band> PSF goodness of fit: reduced chi-square of the fit residuals", "stat.fit.goodness"),
    _c("psf_flags_<band>", "int32", None, "<band> PSF fit flags (0 = good): " + legend(PSF_FLAGS), "meta.code.qual"),
    _c("fluxfrac_radius_50_<band>", "float32", "arcsec", "<band> radius of the circle enclosing half the Kron flux", "phys.angSize"),
    _c("is_extended_<band>", "bool", None, "True if the <band> light profile is significantly broader than the PSF", "src.class.starGalaxy"),
]

EXPOSURE_PSF = [
    _c("psf_exp_<band>_flux", "float32", "nJy", "<band> PSF flux fitted on each calibrated exposure of the mosaic (native pixels), inverse-variance mean", "phot.flux"),
    _c("psf_exp_<band>_flux_err", "float32", "nJy", "Uncertainty in psf_exp_<band>_flux", "stat.error;phot.flux"),
    _c("psf_exp_<band>_nexp", "int16", None, "Number of exposures in psf_exp_<band>_flux", "meta.number"),
    _c("psf_exp_gof_<band>", "float32", None, "Reduced chi-square of the exposures' <band> fluxes about their mean (above 1: variable or blended)", "stat.fit.goodness"),
    _c("ra_psf_exp_<band>", "float64", "deg", "Right ascension (ICRS): mean of the <band> PSF-fitted positions on the exposures", "pos.eq.ra"),
    _c("dec_psf_exp_<band>", "float64", "deg", "Declination (ICRS): mean of the <band> PSF-fitted positions on the exposures", "pos.eq.dec"),
]

PSF_MATCHED = [
    _c("aper_matched_<band>_flux", "float32", "nJy", "<band> flux in a 0.5 arcsec radius circle on the image convolved to the PSF of the catalog's broadest band (meta psf_matched_to): ratios between bands are colours free of PSF differences", "phot.flux"),
    _c("aper_matched_<band>_flux_err", "float32", "nJy", "Uncertainty in aper_matched_<band>_flux", "stat.error;phot.flux"),
]

FLAGS = [
    _c("nn_label", "int32", None, "Label of the nearest neighbour in this catalog", "meta.id.cross"),
    _c("nn_distance", "float32", "arcsec", "Distance to the nearest neighbour in this catalog", "pos.angDistance"),
    _c("warning_flags", "int32", None, "Warning flags (0 = good): " + legend(WARNING_FLAGS), "meta.code"),
]

IMAGE_FLAGS = [
    _c("image_flags", "int32", None, "Bitwise OR of the data-quality flags over the source segment (0 = good)", "meta.code.qual"),
]

FORCED_IDENTITY = [
    _c("id", "int64", None, "Source identifier from the input position list", "meta.id;meta.main"),
    _c("ra", "float64", "deg", "Right ascension (ICRS) of the input position", "pos.eq.ra;meta.main"),
    _c("dec", "float64", "deg", "Declination (ICRS) of the input position", "pos.eq.dec;meta.main"),
    _c("x", "float32", "pix", "Column coordinate of the input position in this image (0-indexed)", "pos.cartesian.x"),
    _c("y", "float32", "pix", "Row coordinate of the input position in this image (0-indexed)", "pos.cartesian.y"),
]

FORCED_PHOTOMETRY = [
    _c("aper<radius>_<band>_flux", "float32", "nJy", "<band> flux in a circular aperture of radius <radius> arcsec at the input position", "phot.flux"),
    _c("aper<radius>_<band>_flux_err", "float32", "nJy", "Uncertainty in aper<radius>_<band>_flux", "stat.error;phot.flux"),
    _c("psf_<band>_flux", "float32", "nJy", "<band> PSF flux with the position held fixed at the input position", "phot.flux"),
    _c("psf_<band>_flux_err", "float32", "nJy", "Uncertainty in psf_<band>_flux", "stat.error;phot.flux"),
    _c("psf_gof_<band>", "float32", None, "<band> reduced chi-square of the fixed-position PSF fit", "stat.fit.goodness"),
]

FORCED_FLAGS = [
    _c("warning_flags", "int32", None, "Warning flags (0 = good): " + legend(FORCED_WARNING_FLAGS), "meta.code"),
]

_TEMPLATES = {
    "detector": [IDENTITY, POSITION, PSF_POSITION, PHOTOMETRY, SHAPE, FLAGS, IMAGE_FLAGS],
    "skycell": [IDENTITY, POSITION, PSF_POSITION, PHOTOMETRY, EXPOSURE_PSF, SHAPE, FLAGS],
    "multiband": [IDENTITY, POSITION, SHAPE, PSF_POSITION, PHOTOMETRY, EXPOSURE_PSF, PSF_MATCHED, FLAGS],
    "forced": [FORCED_IDENTITY, FORCED_PHOTOMETRY, FORCED_FLAGS],
}


def radius_token(radius_arcsec: float) -> str:
    """Two-digit name of an aperture radius in tenths of an arcsecond (0.4 → ``'04'``)."""
    return f"{round(radius_arcsec * 10):02d}"


def band_token(band: str) -> str:
    """Column-name form of a filter: ``'F158'`` → ``'f158'``."""
    return str(band).strip().lower()


def column_templates(kind: str) -> list[ColumnSpec]:
    """The column templates of a catalog flavour, unexpanded."""
    if kind not in _TEMPLATES:
        raise CatalogSchemaError(f"unknown catalog kind {kind!r}: expected one of {', '.join(CATALOG_KINDS)}")
    return [spec for group in _TEMPLATES[kind] for spec in group]


def catalog_columns(kind: str, bands, radii_arcsec=APERTURE_RADII_ARCSEC) -> list[ColumnSpec]:
    """The concrete columns of a catalog flavour for the given bands.

    Per-band groups are repeated band after band in the order given, so a
    multi-band table keeps each band's photometry together.
    """
    bands = [band_token(b) for b in ([bands] if isinstance(bands, str) else bands)]
    if not bands:
        raise CatalogSchemaError("a catalog needs at least one band")
    if kind in ("detector", "skycell") and len(bands) != 1:
        raise CatalogSchemaError(f"a {kind} catalog has exactly one band, got {bands}")
    radii = [radius_token(r) for r in radii_arcsec]
    out: list[ColumnSpec] = []
    for group in _TEMPLATES[kind] if kind in _TEMPLATES else column_templates(kind):
        if any(spec.per_band for spec in group):
            for band in bands:
                for spec in group:
                    out.extend(_expand_radii(spec, band, radii))
        else:
            for spec in group:
                out.extend(_expand_radii(spec, None, radii))
    return out


def _expand_radii(spec, band, radii):
    if spec.per_radius:
        return [spec.expand(band, r) for r in radii]
    return [spec.expand(band)]


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def make_table(columns: list[ColumnSpec], values: dict, meta: dict | None = None):
    """Build a :class:`~astropy.table.QTable` that follows ``columns`` exactly.

    Parameters
    ----------
    columns : list of ColumnSpec
        The schema, in output order.
    values : dict of str -> array-like
        Column values (plain numbers in the schema unit). Every schema column
        must be present; extra keys are an error.
    meta : dict, optional
        Table metadata.
    """
    from astropy.table import Column, QTable

    names = [c.name for c in columns]
    missing = [n for n in names if n not in values]
    extra = [k for k in values if k not in set(names)]
    if missing or extra:
        raise CatalogSchemaError(_problem_text(missing, extra, []))
    table = QTable(meta=dict(meta or {}))
    for spec in columns:
        data = np.asarray(values[spec.name])
        if hasattr(values[spec.name], "unit"):
            data = values[spec.name].to_value(spec.unit)
        table[spec.name] = Column(
            data.astype(spec.dtype, copy=False),
            name=spec.name,
            unit=spec.unit,
            description=spec.description,
            meta={"ucd": spec.ucd} if spec.ucd else {},
        )
    return table


def _column_unit(col):
    unit = getattr(col, "unit", None)
    return None if unit is None or str(unit) == "" else unit


def validate_table(table, columns: list[ColumnSpec], *, name: str = "catalog") -> None:
    """Check that ``table`` has exactly the schema's columns, dtypes and units.

    Raises
    ------
    CatalogSchemaError
        Listing every missing or unexpected column and every dtype or unit mismatch.
    """
    import astropy.units as u

    names = [c.name for c in columns]
    present = list(table.colnames)
    missing = [n for n in names if n not in present]
    extra = [n for n in present if n not in set(names)]
    wrong = []
    for spec in columns:
        if spec.name not in present:
            continue
        col = table[spec.name]
        dtype = np.asarray(col).dtype if not hasattr(col, "value") else col.value.dtype
        if dtype != np.dtype(spec.dtype):
            wrong.append(f"{spec.name} has dtype {dtype}, expected {spec.dtype}")
        unit = _column_unit(col)
        if spec.unit is None:
            if unit is not None and unit != u.dimensionless_unscaled:
                wrong.append(f"{spec.name} has unit {unit}, expected none")
        elif unit is None or u.Unit(unit) != u.Unit(spec.unit):
            wrong.append(f"{spec.name} has unit {unit or 'none'}, expected {spec.unit}")
    if missing or extra or wrong:
        raise CatalogSchemaError(f"{name} does not match the schema: " + _problem_text(missing, extra, wrong))


def _problem_text(missing, extra, wrong, limit=8):
    parts = []
    for label, items in (("missing columns", missing), ("unexpected columns", extra), ("mismatches", wrong)):
        if items:
            shown = ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------
# Documentation
# ---------------------------------------------------------------------------

_KIND_TITLES = {
    "detector": "Per-detector catalog (one L2 image, one band)",
    "skycell": "Per-sky-cell catalog (one L3 mosaic, one band)",
    "multiband": "Multi-band catalog (one detection image, photometry in every band)",
    "forced": "Forced photometry at given positions",
}


def columns_markdown() -> str:
    """The column reference of every catalog flavour as a Markdown document."""
    lines = [
        "# romanflow catalog columns",
        "",
        "Generated by `romanflow catalog columns` from `romanflow.catalog.schema`; do not edit by hand.",
        "",
        "Fluxes are in nJy: m_AB = -2.5 log10(f / nJy) + 31.4. Pixel coordinates are 0-indexed.",
        "`<band>` is the lower-case filter name (e.g. `f158`); `<radius>` is an aperture radius in tenths",
        "of an arcsecond, one of " + ", ".join(f"`{radius_token(r)}`" for r in APERTURE_RADII_ARCSEC) + ".",
        "",
        "Flag columns (`warning_flags`, `psf_flags_<band>`) hold bits of one registry,",
        "`romanflow.source_flags` (`romanflow.source_flags.decode(value)` names the bits of a value);",
        "each column's description lists the bits it may set.",
        "",
        "| bit | name | meaning |",
        "|---|---|---|",
        *(f"| {flag.value} | `{flag.name}` | {flag.description} |" for flag in REGISTRY),
        "",
        "Parquet files carry each column's unit, description and UCD twice: in the Arrow field metadata",
        "(`unit`, `description`, `ucd`; read by pyarrow, pandas and LSDB users) and in the astropy",
        "`table_meta_yaml` schema metadata (restored by `astropy.table.QTable.read`).",
        "",
    ]
    for kind in CATALOG_KINDS:
        lines += [f"## `{kind}`: {_KIND_TITLES[kind]}", "", "| column | dtype | unit | UCD | description |", "|---|---|---|---|---|"]
        for spec in column_templates(kind):
            desc = spec.description.replace("|", "\\|")
            for token in ("<band>", "<radius>"):
                desc = desc.replace(token, f"`{token}`")
            lines.append(f"| `{spec.name}` | {spec.dtype} | {spec.unit or ''} | {spec.ucd} | {desc} |")
        lines.append("")
    return "\n".join(lines)
