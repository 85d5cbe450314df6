from pathlib import Path

import numpy as np
import pytest

from romanflow.catalog.schema import (
    APERTURE_RADII_ARCSEC,
    CatalogSchemaError,
    catalog_columns,
    columns_markdown,
    make_table,
    validate_table,
)


def _values(columns, n=3):
    return {c.name: np.zeros(n, c.dtype) for c in columns}


def test_expansion_follows_official_names():
    names = [c.name for c in catalog_columns("skycell", ["F158"])]
    for name in ("label", "x_centroid", "y_centroid", "ra", "dec", "ra_centroid_err", "aper01_f158_flux",
                 "aper16_f158_flux_err", "segment_f158_flux", "kron_f158_flux", "kron_f158_abmag",
                 "psf_f158_flux", "psf_f158_flux_err", "semimajor", "orientation_sky", "fwhm",
                 "is_extended_f158", "warning_flags"):
        assert name in names
    assert len(names) == len(set(names))
    assert sum(n.startswith("aper") and n.endswith("_flux") and "bkg" not in n for n in names) == len(APERTURE_RADII_ARCSEC)
    assert "image_flags" in [c.name for c in catalog_columns("detector", ["f184"])]
    multi = [c.name for c in catalog_columns("multiband", ["F158", "F184"])]
    assert "kron_f158_flux" in multi and "kron_f184_flux" in multi and multi.count("semimajor") == 1


def test_single_band_kinds_reject_two_bands_and_unknown_kind():
    with pytest.raises(CatalogSchemaError, match="exactly one band"):
        catalog_columns("skycell", ["f158", "f184"])
    with pytest.raises(CatalogSchemaError, match="unknown catalog kind"):
        catalog_columns("galaxy", ["f158"])


def test_make_table_sets_units_descriptions_ucds():
    cols = catalog_columns("skycell", ["f158"])
    table = make_table(cols, _values(cols))
    assert str(table["kron_f158_flux"].unit) == "nJy"
    assert "Kron" in table["kron_f158_flux"].info.description
    assert table["ra"].info.meta["ucd"] == "pos.eq.ra;meta.main"
    validate_table(table, cols)


def test_validation_names_every_problem():
    cols = catalog_columns("skycell", ["f158"])
    table = make_table(cols, _values(cols))
    table.remove_column("dec")
    table["bogus"] = np.ones(3)
    table["label"] = table["label"].astype(np.float64)
    table["fwhm"] = table["fwhm"].value * __import__("astropy.units").units.deg
    with pytest.raises(CatalogSchemaError) as info:
        validate_table(table, cols, name="x.parquet")
    text = str(info.value)
    assert "x.parquet" in text and "missing columns: dec" in text and "unexpected columns: bogus" in text
    assert "label has dtype float64" in text and "fwhm has unit deg" in text


def test_make_table_rejects_missing_values():
    cols = catalog_columns("forced", ["f158"])
    values = _values(cols)
    del values["psf_f158_flux"]
    with pytest.raises(CatalogSchemaError, match="missing columns: psf_f158_flux"):
        make_table(cols, values)


def test_column_reference_document_is_current():
    doc = Path(__file__).resolve().parents[2] / "docs" / "catalog_columns.md"
    assert doc.read_text() == columns_markdown() + "\n"
