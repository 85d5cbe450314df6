"""Parquet tables of the injection products, with a unit and a description on every column."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

#: Key of the provenance record in a table's Parquet metadata.
PROVENANCE_KEY = b"romanflow.injection"


def write_documented_parquet(table: pd.DataFrame, path, columns: dict, provenance: dict | None = None, *,
                             catalog_kind: str | None = None, inputs=(), filters=()) -> Path:
    """Write ``table`` as Parquet, atomically; ``columns`` maps a name to (unit, description),
    stored as Arrow field metadata; ``provenance`` (JSON) goes into the file's metadata.

    With ``catalog_kind``, the file also carries the keys every romanflow catalog has for the
    archive (``romanflow.catalog_kind``, ``romanflow.inputs``: the products it was made from, by
    name, for lineage; ``romanflow.filters``; ``romanflow.version``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from romanflow.formats import atomic_path

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    fields = []
    for f in arrow.schema:
        unit, description = columns.get(f.name, ("", ""))
        fields.append(f.with_metadata({b"unit": unit.encode(), b"description": description.encode()}))
    metadata = {PROVENANCE_KEY: json.dumps(provenance or {}, default=str).encode()}
    if catalog_kind is not None:
        from romanflow.version import __version__

        metadata[b"romanflow.catalog_kind"] = json.dumps(catalog_kind).encode()
        metadata[b"romanflow.inputs"] = json.dumps([Path(str(p)).name for p in inputs]).encode()
        metadata[b"romanflow.filters"] = json.dumps(list(filters)).encode()
        metadata[b"romanflow.version"] = json.dumps(__version__).encode()
    arrow = arrow.cast(pa.schema(fields, metadata=metadata))
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)
    return Path(path)


def read_provenance(path) -> dict:
    """The provenance record of a table written by :func:`write_documented_parquet`."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(PROVENANCE_KEY, b"{}"))


def columns_markdown(columns: dict) -> str:
    """A Markdown table of ``columns`` (name, unit, description)."""
    lines = ["| column | unit | description |", "|---|---|---|"]
    lines += [f"| `{name}` | {unit} | {description} |" for name, (unit, description) in columns.items()]
    return "\n".join(lines)
