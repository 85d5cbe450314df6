import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.table import QTable

from romanflow.catalog.parquet import read_catalog_parquet, read_provenance, write_catalog_parquet
from romanflow.catalog.schema import CatalogSchemaError, catalog_columns, make_table
from romanflow.errors import InputFileError


@pytest.fixture
def table():
    cols = catalog_columns("skycell", ["f158"])
    rng = np.random.default_rng(5)
    values = {c.name: (rng.random(50) > 0.5 if c.dtype == "bool" else rng.random(50).astype(c.dtype)) for c in cols}
    return cols, make_table(cols, values, meta={"bands": ["f158"]})


def test_round_trip_restores_units_descriptions_and_values(tmp_path, table):
    cols, t = table
    path = write_catalog_parquet(t, tmp_path / "cat.parquet", columns=cols,
                                 provenance={"inputs": ["r0001_f158.asdf"], "filters": ["F158"],
                                             "reference_files": {"photom": "roman_wfi_photom_0001.asdf"}})
    back = QTable.read(path)
    assert back.colnames == t.colnames
    for name in ("ra", "kron_f158_flux", "semimajor", "is_extended_f158", "label"):
        assert np.array_equal(np.asarray(back[name]), np.asarray(t[name]))
        assert getattr(back[name], "unit", None) == getattr(t[name], "unit", None)
        assert back[name].info.description == t[name].info.description
    assert back["kron_f158_flux"].info.meta["ucd"] == "phot.flux"
    assert back.meta["bands"] == ["f158"]
    assert read_catalog_parquet(path)["psf_f158_flux"].unit == "nJy"


def test_arrow_field_metadata_and_provenance_for_non_astropy_readers(tmp_path, table):
    cols, t = table
    path = write_catalog_parquet(t, tmp_path / "cat.parquet", columns=cols,
                                 provenance={"inputs": ["a.asdf"], "filters": ["F158"]})
    schema = pq.read_schema(path)
    meta = schema.field("aper04_f158_flux").metadata
    assert meta[b"unit"] == b"nJy" and b"0.4 arcsec" in meta[b"description"] and meta[b"ucd"] == b"phot.flux"
    assert schema.field("ra").metadata[b"unit"] == b"deg"
    assert b"unit" not in (schema.field("label").metadata or {})
    prov = read_provenance(path)
    assert prov["inputs"] == ["a.asdf"] and prov["filters"] == ["F158"] and prov["version"]
    assert b"table_meta_yaml" in schema.metadata
    df = pd.read_parquet(path)
    assert len(df) == 50 and np.allclose(df["ra"].to_numpy(), np.asarray(t["ra"]))
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "UNCOMPRESSED"


def test_invalid_table_writes_nothing(tmp_path, table):
    cols, t = table
    t.remove_column("dec")
    with pytest.raises(CatalogSchemaError, match="missing columns: dec"):
        write_catalog_parquet(t, tmp_path / "cat.parquet", columns=cols)
    assert list(tmp_path.iterdir()) == []


def test_read_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(InputFileError, match="broken.parquet"):
        read_catalog_parquet(bad)
    with pytest.raises(InputFileError, match="no such file"):
        read_catalog_parquet(tmp_path / "absent.parquet")
