"""Self-describing Parquet catalogs.

A catalog file describes itself to every kind of reader:

* Arrow **field metadata** ``unit``, ``description`` and ``ucd`` on every
  column, which pyarrow, pandas (``pq.read_schema``) and LSDB users see;
* the astropy YAML header under the schema-metadata key ``table_meta_yaml``,
  so :meth:`astropy.table.QTable.read` restores units, descriptions, UCDs and
  the table metadata;
* provenance in the schema metadata under ``romanflow.*`` keys (software
  version, catalog kind, filters, input files, reference files), each a
  JSON string.

Files are written uncompressed, to a temporary name first and then renamed,
so an interrupted write never leaves a partial catalog.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from romanflow.errors import InputFileError, OutputExistsError

#: Prefix of romanflow's own schema-metadata keys.
PROVENANCE_PREFIX = "romanflow."


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def provenance_metadata(provenance: dict | None) -> dict[str, str]:
    """Flatten a provenance dictionary into ``romanflow.<key>`` → JSON string."""
    from romanflow.version import __version__

    prov = {"version": __version__}
    prov.update(provenance or {})
    return {f"{PROVENANCE_PREFIX}{k}": json.dumps(v, default=_json_default) for k, v in prov.items()}


def catalog_provenance(table, provenance: dict | None) -> dict:
    """``provenance`` plus the table's own record of substitutes (``table.meta['fallbacks']``, see
    :func:`romanflow.catalog.source_catalog.make_catalog`), so that every catalog file carries it."""
    out = dict(provenance or {})
    fallbacks = (table.meta or {}).get("fallbacks")
    if fallbacks is not None:
        out.setdefault("fallbacks", list(fallbacks))
    return out


def read_provenance(schema_or_path) -> dict:
    """The ``romanflow.*`` provenance stored in a Parquet schema (or file), decoded."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(schema_or_path) if isinstance(schema_or_path, (str, Path)) else schema_or_path
    out = {}
    for key, value in (schema.metadata or {}).items():
        key = key.decode()
        if key.startswith(PROVENANCE_PREFIX):
            out[key[len(PROVENANCE_PREFIX):]] = json.loads(value.decode())
    return out


def field_metadata(column) -> dict[bytes, bytes]:
    """Arrow field metadata (unit, description, ucd) for one astropy column."""
    info = column.info
    meta = {}
    unit = getattr(column, "unit", None)
    if unit is not None and str(unit) != "":
        meta[b"unit"] = str(unit).encode()
    if info.description:
        meta[b"description"] = str(info.description).encode()
    ucd = (info.meta or {}).get("ucd")
    if ucd:
        meta[b"ucd"] = str(ucd).encode()
    return meta


def table_to_arrow(table, provenance: dict | None = None):
    """Convert an astropy table to a :class:`pyarrow.Table` carrying all metadata.

    Parameters
    ----------
    table : astropy.table.Table or QTable
        Plain columns or Quantity columns (no other mixins).
    provenance : dict, optional
        Extra provenance, stored as ``romanflow.<key>`` schema metadata, with the
        table's ``fallbacks`` (:func:`catalog_provenance`).
    """
    import pyarrow as pa
    from astropy.table import meta as table_meta
    from astropy.table import serialize
    from astropy.utils.data_info import serialize_context_as

    with serialize_context_as("parquet"):
        encoded = serialize.represent_mixins_as_columns(table)
    yaml_text = "\n".join(table_meta.get_yaml_from_table(encoded))
    fields, arrays = [], []
    for name in encoded.colnames:
        values = np.asarray(encoded[name])
        if values.dtype.byteorder == ">":
            values = values.astype(values.dtype.newbyteorder("="))
        source = table[name] if name in table.colnames else encoded[name]
        fields.append(pa.field(name, pa.from_numpy_dtype(values.dtype), metadata=field_metadata(source) or None))
        arrays.append(pa.array(values))
    schema_meta = {"table_meta_yaml": yaml_text}
    schema_meta.update(provenance_metadata(catalog_provenance(table, provenance)))
    schema = pa.schema(fields, metadata={k.encode(): v.encode() for k, v in schema_meta.items()})
    return pa.Table.from_arrays(arrays, schema=schema)


def check_catalog_destination(path, *, overwrite: bool = False) -> Path:
    """Check a catalog file can be written at ``path`` without losing anything; create nothing.

    Accepted: a path that does not exist, in a folder that exists or can be
    created; with ``overwrite``, also an existing Parquet file. Raises
    :class:`~romanflow.errors.OutputExistsError` for an existing file without
    ``overwrite`` and :class:`~romanflow.errors.InputFileError` for anything
    else (a folder, a file that is not Parquet, a path under a file, a folder
    that is not writable).
    """
    import os

    import pyarrow.parquet as pq

    path = Path(path)
    if os.path.lexists(path):
        if path.is_dir() or not path.is_file():
            raise InputFileError(path, "exists and is not a catalog file; not replaced")
        if not overwrite:
            raise OutputExistsError(path)
        try:
            pq.read_schema(path)
        except Exception:  # noqa: BLE001 - pyarrow raises many kinds for a file that is not Parquet
            raise InputFileError(path, "exists and is not a Parquet catalog; not replaced") from None
    existing = path.absolute().parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputFileError(existing, f"is not a folder: cannot write {path}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputFileError(existing, f"folder is not writable: cannot write {path}")
    return path


def write_catalog_parquet(table, path, *, columns=None, provenance: dict | None = None) -> Path:
    """Write a catalog table as a self-describing Parquet file, atomically.

    Parameters
    ----------
    table : astropy.table.QTable
        The catalog.
    path : str or Path
        Output file.
    columns : list of ColumnSpec, optional
        Schema to validate against before anything is written.
    provenance : dict, optional
        Provenance (``inputs``, ``reference_files``, ``filters`` …), stored as
        ``romanflow.<key>`` schema metadata.
    """
    import pyarrow.parquet as pq

    from romanflow.catalog.schema import validate_table
    from romanflow.formats import atomic_path

    path = Path(path)
    if columns is not None:
        validate_table(table, columns, name=path.name)
    arrow_table = table_to_arrow(table, provenance)
    with atomic_path(path) as tmp:
        pq.write_table(arrow_table, tmp, compression="none", write_page_checksum=True)
    return path


def read_catalog_parquet(path):
    """Read a catalog Parquet file into a :class:`~astropy.table.QTable` with units and metadata."""
    from astropy.table import QTable

    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    try:
        return QTable.read(path, format="parquet")
    except Exception as exc:  # pyarrow/astropy raise many kinds for a file that is not a catalog: name the file
        raise InputFileError(path, f"not a readable Parquet catalog: {str(exc).splitlines()[0][:200]}") from None
