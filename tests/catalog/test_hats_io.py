import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import QTable

from romanflow.catalog.hats_io import adaptive_partitions, open_hats, spatial_index, write_hats
from romanflow.catalog.schema import catalog_columns, make_table
from romanflow.errors import RomanflowError


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    cols = catalog_columns("skycell", ["f158"])
    rng = np.random.default_rng(11)
    n = 6000
    values = {c.name: (rng.random(n) > 0.5 if c.dtype == "bool" else rng.random(n).astype(c.dtype)) for c in cols}
    values["label"] = np.arange(1, n + 1, dtype=np.int32)
    values["ra"] = 359.9 + rng.random(n) * 0.2 % 360  # straddles RA = 0
    values["ra"] = np.mod(values["ra"], 360.0)
    values["dec"] = 1.9 + rng.random(n) * 0.2
    table = make_table(cols, values)
    path = tmp_path_factory.mktemp("hats") / "cells"
    write_hats(table, path, pixel_threshold=800, provenance={"filters": ["F158"], "inputs": ["m.asdf"]})
    return table, path


def test_partitions_respect_threshold():
    rng = np.random.default_rng(0)
    idx = spatial_index(150 + rng.random(5000) * 0.3, 2 + rng.random(5000) * 0.3)
    order, pixel = adaptive_partitions(idx, 500, highest_order=12)
    keys, counts = np.unique(order * (1 << 40) + pixel, return_counts=True)
    assert counts.max() <= 500 and counts.sum() == 5000
    # every row lies inside its partition pixel
    assert np.all((idx >> (2 * (29 - order))) == pixel)


@pytest.mark.parametrize("center,radius", [((0.0, 2.0), 150.0), ((359.95, 1.95), 60.0), ((0.05, 2.08), 250.0)])
def test_lsdb_cone_search_matches_brute_force(catalog, center, radius):
    table, path = catalog
    found = open_hats(path).cone_search(center[0], center[1], radius_arcsec=radius).compute()
    sep = SkyCoord(np.asarray(table["ra"]), np.asarray(table["dec"]), unit="deg").separation(
        SkyCoord(*center, unit="deg")
    ).arcsec
    expected = set(np.asarray(table["label"])[sep < radius].tolist())
    assert len(expected) > 20
    assert set(found["label"].tolist()) == expected and len(found) == len(expected)


def test_metadata_survives_in_leaves_and_common_metadata(catalog):
    table, path = catalog
    leaves = sorted((path / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet"))
    assert len(leaves) > 3
    for file in [path / "dataset" / "_common_metadata", path / "dataset" / "_metadata", *leaves]:
        schema = pq.read_schema(file)
        meta = schema.field("kron_f158_flux").metadata
        assert meta[b"unit"] == b"nJy" and meta[b"description"].startswith(b"F158 flux") and meta[b"ucd"] == b"phot.flux"
        assert b"romanflow.filters" in schema.metadata and b"table_meta_yaml" in schema.metadata
    back = QTable.read(leaves[0])
    assert back["kron_f158_flux"].unit == "nJy"
    props = (path / "hats.properties").read_text()
    assert "hats_nrows=6000" in props and "romanflow_filters" in props
    total = sum(pq.read_metadata(leaf).num_rows for leaf in leaves)
    assert total == len(table)


def test_refuses_to_overwrite_unless_asked(catalog):
    table, path = catalog
    with pytest.raises(RomanflowError, match="already exists"):
        write_hats(table, path, overwrite=False)
