"""The archive's tables, one definition for SQLite and PostgreSQL (SQLAlchemy Core).

``obscore`` holds one row per product (its current version) with the IVOA ObsCore 1.1 columns and the
Roman ones; ``files`` every version of every product file; ``lineage`` which inputs (science inputs,
reference files, association members) each file version was made from; ``footprint_cells`` the
HEALPix index of footprints (SQLite; PostgreSQL searches ``s_region`` of pgSphere type ``spoly``
through a GiST index); ``catalog_sources`` catalog rows by position (HEALPix depth-29 cell on
SQLite, a q3c index on PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)
from sqlalchemy.types import UserDefinedType


class SPoly(UserDefinedType):
    """pgSphere's spherical polygon (``spoly``)."""

    cache_ok = True

    def get_col_spec(self, **kw):
        return "spoly"

    def bind_expression(self, bindvalue):
        from sqlalchemy import cast

        return cast(bindvalue, self)


#: Schema version written to ``archive_info``; an archive of another version is refused.
SCHEMA_VERSION = 1

#: ObsCore 1.1 columns (name, type, unit, UCD-ish description) in the order tables show them.
OBSCORE_COLUMNS = (
    ("obs_id", "str", "", "product identifier (unique)"),
    ("obs_publisher_did", "str", "", "IVOA publisher dataset identifier"),
    ("obs_collection", "str", "", "collection name"),
    ("dataproduct_type", "str", "", "image, catalog, measurements, ..."),
    ("dataproduct_subtype", "str", "", "Roman product kind in words"),
    ("calib_level", "int", "", "ObsCore calibration level 0-4"),
    ("target_name", "str", "", "target or sky cell"),
    ("s_ra", "float", "deg", "ICRS right ascension of the footprint centre"),
    ("s_dec", "float", "deg", "ICRS declination of the footprint centre"),
    ("s_fov", "float", "deg", "diameter of the footprint's bounding circle"),
    ("s_region", "str", "", "footprint, STC-S POLYGON ICRS"),
    ("s_resolution", "float", "arcsec", "spatial resolution (pixel scale)"),
    ("s_xel1", "int", "", "pixels along axis 1"),
    ("s_xel2", "int", "", "pixels along axis 2"),
    ("t_min", "float", "d", "start time, MJD (UTC)"),
    ("t_max", "float", "d", "end time, MJD (UTC)"),
    ("t_exptime", "float", "s", "exposure time"),
    ("em_min", "float", "m", "shortest wavelength of the band"),
    ("em_max", "float", "m", "longest wavelength of the band"),
    ("o_ucd", "str", "", "UCD of the observable"),
    ("pol_states", "str", "", "polarisation states"),
    ("facility_name", "str", "", "observatory"),
    ("instrument_name", "str", "", "instrument"),
    ("access_url", "str", "", "URL of the file, relative to the server's base URL"),
    ("access_format", "str", "", "MIME type of the file"),
    ("access_estsize", "int", "kbyte", "file size"),
)

#: Roman columns after the ObsCore ones.
ROMAN_COLUMNS = (
    ("detector", "str", "", "WFI detector (WFI01..WFI18)"),
    ("optical_element", "str", "", "filter"),
    ("ma_table_number", "int", "", "multi-accumulation table"),
    ("program", "int", "", "program number"),
    ("visit", "int", "", "visit number"),
    ("pass_number", "int", "", "pass number"),
    ("exposure", "int", "", "exposure number"),
    ("skycell", "str", "", "sky cell name"),
    ("product_level", "str", "", "L1, L2, L3, L4 or ref"),
    ("product_kind", "str", "", "uncal, cal, coadd, catalog, source_table, outlier_record, association, reference"),
    ("software_version", "str", "", "software that made the product"),
    ("exposure_type", "str", "", "exposure type (WFI_IMAGE, ...)"),
    ("version", "int", "", "version of the product (1 for the first)"),
    ("sha256", "str", "", "SHA-256 of the current file"),
    ("flags", "str", "", "problems found at ingest (no_footprint)"),
)

RESULT_COLUMNS = OBSCORE_COLUMNS + ROMAN_COLUMNS

_SQL = {"str": Text, "int": BigInteger, "float": Float}


def build_metadata(backend: str) -> MetaData:
    """Table definitions for ``backend`` ("sqlite" or "postgresql")."""
    md = MetaData()
    Table("archive_info", md, Column("key", String(64), primary_key=True), Column("value", Text))
    cols = [Column("obs_pk", Integer, primary_key=True, autoincrement=True)]
    for name, kind, _, _ in RESULT_COLUMNS:
        if name == "s_region" and backend == "postgresql":
            cols.append(Column("s_region", SPoly, nullable=True))
            continue
        cols.append(Column(name, _SQL[kind], nullable=name != "obs_id"))
    cols += [Column("file_id", BigInteger), Column("vertices", Text), Column("ref_files", Text),
             Column("ingested_at", Float)]
    obscore = Table("obscore", md, *cols, UniqueConstraint("obs_id", name="obscore_obs_id_key"))
    Index("obscore_time", obscore.c.t_min, obscore.c.t_max)
    Index("obscore_band", obscore.c.optical_element)
    Index("obscore_detector", obscore.c.detector)
    Index("obscore_kind", obscore.c.product_kind)
    if backend == "postgresql":
        Index("obscore_s_region", obscore.c.s_region, postgresql_using="gist")
    else:
        cells = Table("footprint_cells", md, Column("cell", BigInteger, nullable=False),
                      Column("obs_pk", Integer, nullable=False))
        Index("footprint_cells_cell", cells.c.cell, cells.c.obs_pk)
        Index("footprint_cells_obs", cells.c.obs_pk)
    files = Table("files", md,
                  Column("file_id", Integer, primary_key=True, autoincrement=True),
                  Column("obs_id", Text, nullable=False),
                  Column("version", Integer, nullable=False),
                  Column("uri", Text, nullable=False),
                  Column("sha256", String(64), nullable=False),
                  Column("size", BigInteger, nullable=False),
                  Column("mtime_ns", BigInteger),
                  Column("status", String(16), nullable=False),
                  Column("ingested_at", Float, nullable=False),
                  UniqueConstraint("obs_id", "version", name="files_obs_version_key"))
    Index("files_uri", files.c.uri)
    Index("files_sha", files.c.sha256)
    lineage = Table("lineage", md,
                    Column("output_file_id", BigInteger, nullable=False),
                    Column("output_obs_id", Text, nullable=False),
                    Column("input_obs_id", Text, nullable=False),
                    Column("role", String(32), nullable=False),
                    Column("detail", Text, nullable=False, default=""),
                    UniqueConstraint("output_file_id", "input_obs_id", "role", "detail", name="lineage_edge_key"))
    Index("lineage_input", lineage.c.input_obs_id)
    Index("lineage_output", lineage.c.output_obs_id)
    sources = Table("catalog_sources", md,
                    Column("source_pk", Integer, primary_key=True, autoincrement=True),
                    Column("catalog_obs_id", Text, nullable=False),
                    Column("row_index", BigInteger, nullable=False),
                    Column("ra", Float, nullable=False),
                    Column("dec", Float, nullable=False),
                    Column("fluxes", Text),
                    Column("healpix29", BigInteger))
    Index("catalog_sources_catalog", sources.c.catalog_obs_id)
    if backend != "postgresql":
        Index("catalog_sources_healpix", sources.c.healpix29)
    return md
