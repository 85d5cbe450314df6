"""HATS-partitioned copies of catalogs that LSDB can open and cone-search.

The leaf files are written here with an explicit Arrow schema, so every
column keeps its field metadata (unit, description, UCD) and the schema keeps
the astropy ``table_meta_yaml`` header and the ``romanflow.*`` provenance, in
each leaf file and in ``dataset/_common_metadata`` and ``dataset/_metadata``.
(``lsdb.from_dataframe`` would drop all of it.)

Partitioning is adaptive: starting from HEALPix order 0, every nested pixel
holding more than ``pixel_threshold`` rows is split into its four children,
down to ``highest_order``. Rows are sorted by ``_healpix_29`` within a leaf.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path

import numpy as np

from romanflow.errors import RomanflowError

SPATIAL_INDEX_COLUMN = "_healpix_29"
SPATIAL_INDEX_ORDER = 29
#: HEALPix order of the coverage map written beside the catalog.
SKYMAP_ORDER = 8


def spatial_index(ra_deg, dec_deg) -> np.ndarray:
    """HEALPix nested index at order 29 of sky positions (int64)."""
    import cdshealpix
    from astropy.coordinates import Latitude, Longitude

    ra = Longitude(np.asarray(ra_deg, dtype=np.float64), unit="deg")
    dec = Latitude(np.asarray(dec_deg, dtype=np.float64), unit="deg")
    return cdshealpix.nested.lonlat_to_healpix(ra, dec, SPATIAL_INDEX_ORDER).astype(np.int64)


def _degrees(column) -> np.ndarray:
    unit = getattr(column, "unit", None)
    if unit is not None and str(unit) != "":
        return np.asarray(column.to_value("deg"), dtype=np.float64)
    return np.asarray(column, dtype=np.float64)


def adaptive_partitions(index29: np.ndarray, pixel_threshold: int, highest_order: int = 10):
    """Assign rows to adaptive HEALPix partitions.

    Parameters
    ----------
    index29 : ndarray of int64
        Order-29 nested index of every row.
    pixel_threshold : int
        Largest number of rows in one partition (exceeded only at ``highest_order``).
    highest_order : int
        Deepest HEALPix order a partition may have.

    Returns
    -------
    order, pixel : ndarray of int64, one per row
        The partition (HEALPix order and nested pixel number) of every row.
    """
    n = len(index29)
    order = np.full(n, -1, np.int64)
    pixel = np.zeros(n, np.int64)
    pending = np.arange(n)
    for k in range(0, highest_order + 1):
        if pending.size == 0:
            break
        pix_k = index29[pending] >> (2 * (SPATIAL_INDEX_ORDER - k))
        uniq, inverse, counts = np.unique(pix_k, return_inverse=True, return_counts=True)
        final = (counts <= pixel_threshold) | (k == highest_order)
        done = final[inverse]
        order[pending[done]] = k
        pixel[pending[done]] = pix_k[done]
        pending = pending[~done]
    return order, pixel


def write_hats(
    table,
    path,
    *,
    catalog_name: str | None = None,
    ra_column: str = "ra",
    dec_column: str = "dec",
    pixel_threshold: int = 1_000_000,
    highest_order: int = 10,
    provenance: dict | None = None,
    overwrite: bool = True,
) -> Path:
    """Write an astropy catalog table as a HATS catalog directory.

    Parameters
    ----------
    table : astropy.table.QTable
        The catalog, with sky positions in ``ra_column`` / ``dec_column`` (deg).
    path : str or Path
        Catalog directory to create (``hats.properties``, ``partition_info.csv``,
        ``skymap.fits``, ``dataset/…``).
    catalog_name : str, optional
        ``obs_collection`` of the catalog; the directory name by default.
    pixel_threshold : int
        Largest number of rows per partition.
    highest_order : int
        Deepest HEALPix order of a partition.
    provenance : dict, optional
        Stored in every file's schema metadata and, flattened, in ``hats.properties``.
    overwrite : bool
        Replace an existing catalog at ``path``; otherwise an existing one is an error.

    Notes
    -----
    The catalog is assembled in a hidden sibling directory and renamed into
    place at the end, so readers never see a partial catalog.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from hats.catalog.dataset.table_properties import TableProperties
    from hats.catalog.partition_info import PartitionInfo
    from hats.io import paths as hats_paths
    from hats.io.parquet_metadata import write_parquet_metadata
    from hats.io.skymap import write_skymap
    from hats.pixel_math import HealpixPixel

    from romanflow.catalog.parquet import catalog_provenance, provenance_metadata, table_to_arrow

    path = Path(path)
    if path.exists() and not overwrite:
        raise RomanflowError(f"{path}: a catalog already exists there (pass overwrite=True to replace it)")
    for col in (ra_column, dec_column):
        if col not in table.colnames:
            raise RomanflowError(f"cannot write HATS catalog {path}: the table has no column {col!r}")
    if len(table) == 0:
        raise RomanflowError(f"cannot write HATS catalog {path}: the table has no rows")
    catalog_name = catalog_name or path.name
    provenance = catalog_provenance(table, provenance)

    from astropy.table import Column

    ra = _degrees(table[ra_column])
    dec = _degrees(table[dec_column])
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise RomanflowError(f"cannot write HATS catalog {path}: {ra_column}/{dec_column} hold NaN or inf")
    index29 = spatial_index(ra, dec)
    table = table.copy(copy_data=False)
    table[SPATIAL_INDEX_COLUMN] = Column(
        index29, description="HEALPix nested pixel index at order 29 (HATS spatial index)"
    )
    arrow = table_to_arrow(table, provenance)
    schema = arrow.schema

    order, pixel = adaptive_partitions(index29, pixel_threshold, highest_order)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        partitions = sorted(set(zip(order.tolist(), pixel.tolist())))
        key = order * (1 << 40) + pixel  # order <= 29 and pixel < 12*4**10 fit easily
        sort = np.lexsort((index29, key))
        key_sorted = key[sort]
        bounds = np.flatnonzero(np.diff(key_sorted)) + 1
        starts = np.concatenate([[0], bounds])
        stops = np.concatenate([bounds, [len(sort)]])
        healpix_pixels = []
        for start, stop in zip(starts, stops):
            rows = sort[start:stop]
            k, p = int(order[rows[0]]), int(pixel[rows[0]])
            hp_pixel = HealpixPixel(k, p)
            healpix_pixels.append(hp_pixel)
            leaf = Path(str(hats_paths.pixel_catalog_file(tmpdir, hp_pixel)))
            leaf.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(arrow.take(pa.array(rows)), leaf, compression="zstd")
        assert len(healpix_pixels) == len(partitions)

        write_parquet_metadata(tmpdir)
        # Write the schema explicitly so that field and schema metadata are certain to be kept.
        pq.write_metadata(schema, tmpdir / "dataset" / "_common_metadata")
        PartitionInfo.from_healpix(healpix_pixels).write_to_file(catalog_path=tmpdir)
        skymap = np.bincount(index29 >> (2 * (SPATIAL_INDEX_ORDER - SKYMAP_ORDER)), minlength=12 * 4**SKYMAP_ORDER)
        write_skymap(skymap.astype(np.int64), tmpdir)

        from romanflow.version import __version__

        extra = {f"romanflow_{k[len('romanflow.'):]}": v for k, v in provenance_metadata(provenance).items()}
        counts = stops - starts
        properties = TableProperties(
            catalog_name=catalog_name,
            catalog_type="object",
            total_rows=len(arrow),
            ra_column=ra_column,
            dec_column=dec_column,
            healpix_column=SPATIAL_INDEX_COLUMN,
            healpix_order=SPATIAL_INDEX_ORDER,
            npix_suffix=".parquet",
            skymap_order=SKYMAP_ORDER,
            hats_max_rows=int(counts.max()) if len(counts) else 0,
            hats_builder=f"romanflow v{__version__}",
            hats_creation_date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%MUTC"),
            hats_version="v1.0",
            hats_order=int(max(p.order for p in healpix_pixels)) if healpix_pixels else 0,
            **extra,
        )
        properties.to_properties_file(tmpdir)

        if path.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            path.rename(trash / path.name)
            tmpdir.rename(path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmpdir.rename(path)
    finally:
        if tmpdir.exists():
            shutil.rmtree(tmpdir, ignore_errors=True)
    return path


def open_hats(path, **kwargs):
    """Open a HATS catalog with LSDB (``lsdb.open_catalog``), naming the path on failure."""
    import lsdb

    path = Path(path)
    if not (path / "hats.properties").exists():
        from romanflow.errors import InputFileError

        raise InputFileError(path, "not a HATS catalog (no hats.properties)")
    return lsdb.open_catalog(path, **kwargs)
