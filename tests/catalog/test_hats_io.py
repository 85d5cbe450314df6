import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import QTable

from romanflow.catalog.hats_io import (
    adaptive_partitions,
    hats_from_cell_catalogs,
    merge_cell_catalogs,
    open_hats,
    spatial_index,
    write_hats,
)
from romanflow.catalog.schema import catalog_columns, make_table
from romanflow.errors import InputFileError, OutputExistsError, RomanflowError


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
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_hats(table, path)
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before


def test_never_replaces_a_file_or_a_folder_of_something_else(catalog, tmp_path):
    table, _ = catalog
    regular = tmp_path / "notes.txt"
    regular.write_text("mine")
    folder = tmp_path / "work"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "data.txt").write_text("mine too")
    for target in (regular, folder):
        with pytest.raises(InputFileError, match="not a HATS catalog"):
            write_hats(table, target, overwrite=True)
    assert regular.read_text() == "mine" and (folder / "sub" / "data.txt").read_text() == "mine too"
    with pytest.raises(InputFileError, match="notes.txt"):
        write_hats(table, regular / "hats")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "work"]  # no temporary left


def test_overwrite_replaces_a_hats_catalog_and_an_empty_folder(catalog, tmp_path):
    table, _ = catalog
    empty = tmp_path / "empty"
    empty.mkdir()
    write_hats(table[:100], empty)
    assert len(open_hats(empty).compute()) == 100
    write_hats(table[:200], empty, overwrite=True)
    assert len(open_hats(empty).compute()) == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # the old catalog is gone, no temporary left


def test_a_failed_write_leaves_the_old_catalog(catalog, tmp_path):
    table, _ = catalog
    path = write_hats(table[:100], tmp_path / "cat")
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    broken = table[:100].copy()
    broken["ra"][0] = np.nan
    with pytest.raises(RomanflowError, match="NaN"):
        write_hats(broken, path, overwrite=True)
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before


def _cell_table(ra, dec, labels):
    cols = catalog_columns("skycell", ["f158"])
    n = len(ra)
    values = {c.name: (np.zeros(n, bool) if c.dtype == "bool" else np.zeros(n, c.dtype)) for c in cols}
    values.update(label=np.asarray(labels, np.int32), ra=np.asarray(ra, float), dec=np.asarray(dec, float))
    return make_table(cols, values)


def test_merge_keeps_every_source_once():
    """Two overlapping cells of different projection regions: sources found by both appear once, a source
    only the other cell found stays, and the record counts both."""
    from romanflow.mosaic.skycells import skycell_containing

    rng = np.random.default_rng(2)
    ra = 270.0 + rng.uniform(-0.01, 0.02, 60)
    dec = 66.07 + rng.uniform(-0.005, 0.01, 60)
    home = np.array(skycell_containing(ra, dec))
    cells = sorted(set(home))
    assert len(cells) == 2
    a, b = cells
    jitter = 0.02 / 3600  # the same source measured in two mosaics (deg)
    lone_b_in_a = np.flatnonzero(home == a)[0]  # found only by cell b though its home is a
    lone_a_in_b = np.flatnonzero(home == b)[0]  # found only by cell a though its home is b
    in_a = np.setdiff1d(np.arange(60), [lone_b_in_a])
    in_b = np.setdiff1d(np.arange(60), [lone_a_in_b])
    table_a = _cell_table(ra[in_a], dec[in_a], in_a)
    table_b = _cell_table(ra[in_b] + jitter, dec[in_b] - jitter, in_b)
    merged, record = merge_cell_catalogs([table_a, table_b], [a, b])
    labels = np.sort(np.asarray(merged["label"]))
    assert list(labels) == list(range(60))
    assert record["rows_in"] == 118 and record["rows_kept"] == 60 and record["duplicates_dropped"] == 58
    assert record["kept_outside_home_cell"] == 2 and "home cell" in record["rule"]


def test_hats_from_cell_catalogs_records_the_rule(tmp_path):
    from romanflow.catalog.parquet import write_catalog_parquet
    from romanflow.mosaic.skycells import skycell_containing

    ra, dec = np.array([270.0, 270.0 + 0.1 / 3600 / np.cos(np.radians(66.07))]), np.array([66.07, 66.07])
    cell = skycell_containing(ra, dec)[0]
    path = write_catalog_parquet(_cell_table(ra, dec, [1, 2]), tmp_path / "c_cat.parquet")
    out, record = hats_from_cell_catalogs([path], [cell], tmp_path / "hats")
    assert len(open_hats(out).compute()) == 2  # a close pair in one catalog is two sources
    assert "romanflow_merge" in (out / "hats.properties").read_text()
