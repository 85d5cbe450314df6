"""HATS-partitioned copies of catalogs that LSDB can open and cone-search.

The leaf files are written here with an explicit Arrow schema, so every
column keeps its field metadata (unit, description, UCD) and the schema keeps
the astropy ``table_meta_yaml`` header and the ``romanflow.*`` provenance, in
each leaf file and in ``dataset/_common_metadata`` and ``dataset/_metadata``.
(``lsdb.from_dataframe`` would drop all of it.)

Partitioning is adaptive: starting from HEALPix order 0, every nested pixel
holding more than ``pixel_threshold`` rows is split into its four children,
down to ``highest_order``. Rows are sorted by ``_healpix_29`` within a leaf.

A catalog is assembled in a hidden folder beside its destination and moved
into place at the end. Only an existing HATS catalog (a folder holding
``hats.properties``) is ever replaced, and only when asked; anything else at
the destination is refused and left untouched.

Catalogs of overlapping sky cells are merged by :func:`merge_cell_catalogs`:
each position belongs to the core of exactly one cell (its *home* cell), and a
row measured in another cell is dropped only when a row already kept for the
same home cell, from another catalog, lies within
:data:`DUPLICATE_MATCH_RADIUS_ARCSEC`; the rule and the counts are recorded in
the HATS provenance.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from romanflow.errors import InputFileError, OutputExistsError, RomanflowError

SPATIAL_INDEX_COLUMN = "_healpix_29"
SPATIAL_INDEX_ORDER = 29
#: HEALPix order of the coverage map written beside the catalog.
SKYMAP_ORDER = 8
#: Two rows of overlapping sky cells' catalogs closer than this (arcsec) are one source
#: (about two PSF FWHMs at 1.6 um; the same source measured twice agrees to < 0.1 arcsec).
DUPLICATE_MATCH_RADIUS_ARCSEC = 0.3


def is_hats_catalog(path) -> bool:
    """Whether ``path`` is a folder holding a HATS catalog (``hats.properties``)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / "hats.properties").is_file()


def check_hats_destination(path, *, overwrite: bool = False) -> Path:
    """Check a HATS catalog can be written at ``path`` without losing anything; create nothing.

    Accepted: a path that does not exist (in a folder that exists or can be
    created), an empty folder, or -- with ``overwrite`` -- an existing HATS
    catalog. Raises :class:`~romanflow.errors.OutputExistsError` for an existing
    catalog without ``overwrite`` and :class:`~romanflow.errors.InputFileError`
    for anything else (a file, a folder with other contents, a path under a file).
    """
    path = Path(path)
    if os.path.lexists(path):
        if is_hats_catalog(path):
            if not overwrite:
                raise OutputExistsError(path, "a HATS catalog exists there; pass --overwrite to replace it")
        elif path.is_dir() and not path.is_symlink():
            if any(path.iterdir()):
                raise InputFileError(path, "exists and is a folder that is not a HATS catalog; not replaced")
        else:
            raise InputFileError(path, "exists and is not a HATS catalog folder; not replaced")
    parent = path.absolute().parent
    existing = parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputFileError(existing, f"is not a folder: cannot write the HATS catalog {path}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputFileError(existing, f"folder is not writable: cannot write the HATS catalog {path}")
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _move_into_place(tmpdir: Path, path: Path) -> None:
    """Move the finished catalog ``tmpdir`` to ``path``, replacing an empty folder or a HATS catalog there.

    The old catalog is swapped out in one atomic step where the system allows,
    otherwise renamed aside first (and restored if the second rename fails);
    it is deleted only once the new one is in place.
    """
    if not os.path.lexists(path) or (path.is_dir() and not any(path.iterdir())):
        os.replace(tmpdir, path)  # onto nothing, or onto an empty folder: one atomic rename
        return
    if not is_hats_catalog(path):  # changed since it was checked: leave it alone
        raise InputFileError(path, "exists and is not a HATS catalog folder; not replaced")
    if _exchange(tmpdir, path):
        shutil.rmtree(tmpdir, ignore_errors=True)  # now holds the old catalog
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name[:64]}.", suffix=".old", dir=path.parent))
    old = aside / path.name
    os.rename(path, old)
    try:
        os.rename(tmpdir, path)
    except OSError:
        os.rename(old, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)


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
    overwrite: bool = False,
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
        Replace an existing HATS catalog at ``path``; otherwise an existing one is
        an error. Anything at ``path`` that is not a HATS catalog (a file, a
        non-empty folder of something else) is never replaced
        (:func:`check_hats_destination`).

    Notes
    -----
    The catalog is assembled in a hidden sibling directory and moved into
    place at the end, so readers never see a partial catalog and a failure
    leaves whatever was at ``path`` as it was.
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
    check_hats_destination(path, overwrite=overwrite)
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
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name[:64]}.", suffix=".partial", dir=path.parent))
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
            pq.write_table(arrow.take(pa.array(rows)), leaf, compression="zstd", write_page_checksum=True)
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
        _move_into_place(tmpdir, path)
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


def _unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def merge_cell_catalogs(tables, cells, *, match_radius_arcsec: float = DUPLICATE_MATCH_RADIUS_ARCSEC):
    """One table of the sources of overlapping sky cells' catalogs, each source once.

    Every position lies in the core of exactly one cell, its home cell
    (:func:`romanflow.mosaic.skycells.skycell_containing`). Rows are taken home
    cell by home cell: first those of the home cell's own catalog, then those
    measured in other cells' catalogs, catalog by catalog; a row is dropped when
    a row already kept for the same home cell, from another catalog, lies within
    ``match_radius_arcsec``. So a source another cell found but its home cell did
    not (or a home cell without a catalog) still appears once.

    Parameters
    ----------
    tables : sequence of astropy.table.QTable
        Catalogs with ``ra``, ``dec`` (deg) and the same columns.
    cells : sequence of str
        Sky cell of each catalog.
    match_radius_arcsec : float
        Largest separation of two measurements of one source (arcsec).

    Returns
    -------
    table : astropy.table.QTable or None
        The merged rows (None when there are none).
    record : dict
        The rule and the counts (``rows_in``, ``rows_kept``, ``duplicates_dropped``,
        ``kept_outside_home_cell``), for the catalog's provenance.
    """
    from astropy.table import vstack
    from scipy.spatial import cKDTree

    from romanflow.mosaic.skycells import skycell_containing

    tables, cells = list(tables), [str(c) for c in cells]
    if len(tables) != len(cells):
        raise ValueError("merge_cell_catalogs needs one sky cell per catalog")
    positions, homes = [], []
    for table in tables:
        ra = _degrees(table["ra"]) if len(table) else np.zeros(0)
        dec = _degrees(table["dec"]) if len(table) else np.zeros(0)
        positions.append(_unit_vectors(ra, dec))
        finite = np.isfinite(ra) & np.isfinite(dec)
        home = np.full(len(table), "", dtype=object)
        if finite.any():
            home[finite] = skycell_containing(ra[finite], dec[finite])
        homes.append(home)
    chord = 2.0 * np.sin(np.radians(match_radius_arcsec / 3600.0) / 2.0)
    keep = [np.zeros(len(t), bool) for t in tables]
    outside = 0
    for home_cell in sorted({h for home in homes for h in home.tolist() if h}):
        order = sorted(range(len(tables)), key=lambda k: cells[k] != home_cell)  # the home cell's own catalog first
        kept_xyz = np.zeros((0, 3))
        for k in order:
            rows = np.flatnonzero(homes[k] == home_cell)
            if rows.size == 0:
                continue
            if kept_xyz.shape[0]:
                distance, _ = cKDTree(kept_xyz).query(positions[k][rows], distance_upper_bound=chord)
                rows = rows[~np.isfinite(distance)]
            keep[k][rows] = True
            if cells[k] != home_cell:
                outside += int(rows.size)
            kept_xyz = np.vstack([kept_xyz, positions[k][rows]])
    parts = [t[m] for t, m in zip(tables, keep) if m.any()]
    n_in = int(sum(len(t) for t in tables))
    n_kept = int(sum(int(m.sum()) for m in keep))
    unplaced = int(sum(int((h == "").sum()) for h in homes))
    record = {
        "rule": "each source kept once: rows of a sky position's home cell (the cell whose core holds it) first, "
                "then rows of other cells' catalogs not within match_radius_arcsec of a row already kept for "
                "that home cell from another catalog",
        "match_radius_arcsec": float(match_radius_arcsec),
        "cells": cells,
        "rows_in": n_in,
        "rows_kept": n_kept,
        "duplicates_dropped": n_in - n_kept - unplaced,
        "kept_outside_home_cell": outside,
        "dropped_without_position": unplaced,
    }
    if not parts:
        return None, record
    return vstack(parts, join_type="exact", metadata_conflicts="silent"), record


def hats_from_cell_catalogs(catalog_paths, cells, path, *, catalog_name: str | None = None,
                            overwrite: bool = False, pixel_threshold: int = 1_000_000):
    """Write one HATS catalog of sky cells' Parquet catalogs, each source once (:func:`merge_cell_catalogs`).

    Returns ``(path or None, record)``: None when no catalog has a row (nothing
    written); ``record`` is the merge record, also stored in the HATS provenance
    under ``merge``.
    """
    from romanflow.catalog.parquet import read_catalog_parquet

    tables = [read_catalog_parquet(p) for p in catalog_paths]
    table, record = merge_cell_catalogs(tables, cells)
    if table is None:
        return None, record
    provenance = {"inputs": [Path(p).name for p in catalog_paths], "merge": record}
    write_hats(table, path, catalog_name=catalog_name, provenance=provenance, overwrite=overwrite,
               pixel_threshold=pixel_threshold)
    return Path(path), record
