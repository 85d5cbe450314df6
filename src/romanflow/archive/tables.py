"""Query results as astropy Tables, and their text forms (table, JSON, VOTable)."""

from __future__ import annotations

import io
import json
import math

import numpy as np

_DTYPES = {"str": str, "int": np.int64, "float": np.float64, "bool": bool}


def rows_to_table(rows, columns):
    """An astropy Table with ``columns`` ((name, kind, unit, description), ...) from dict rows; None is masked."""
    from astropy.table import Column, MaskedColumn, Table

    cols = []
    for name, kind, unit, description in columns:
        values = [r.get(name) for r in rows]
        missing = [v is None for v in values]
        if kind == "str":
            data = np.array(["" if v is None else str(v) for v in values]) if values else np.array([], dtype="U1")
        elif kind == "bool":
            data = np.array([bool(v) for v in values], bool)
        else:
            fill = 0 if kind == "int" else np.nan
            data = np.array([fill if v is None else v for v in values], dtype=_DTYPES[kind])
        if any(missing):
            cols.append(MaskedColumn(data, name=name, mask=np.array(missing), unit=unit or None,
                                     description=description, copy=False))
        else:
            cols.append(Column(data, name=name, unit=unit or None, description=description, copy=False))
    return Table(cols, copy=False)


def table_text(table) -> str:
    """A plain fixed-width text table (every row)."""
    if len(table) == 0:
        return " ".join(table.colnames) + "\n(no rows)\n"
    out = io.StringIO()
    table.write(out, format="ascii.fixed_width_two_line")
    return out.getvalue()


def table_json(table) -> str:
    """JSON list of row objects (masked values as null)."""
    rows = []
    for r in table:
        row = {}
        for name in table.colnames:
            v = r[name]
            if np.ma.is_masked(v):
                row[name] = None
            elif isinstance(v, np.generic):
                row[name] = v.item()
            else:
                row[name] = v
            if isinstance(row[name], float) and not math.isfinite(row[name]):
                row[name] = None
        rows.append(row)
    return json.dumps(rows, indent=1)


def table_votable(table) -> str:
    """VOTable 1.4 XML of the table."""
    from astropy.io.votable import from_table

    out = io.BytesIO()
    vot = from_table(table)
    vot.to_xml(out)
    return out.getvalue().decode()


def format_table(table, fmt: str) -> str:
    """``table``, ``json`` or ``votable`` text of a result table."""
    if fmt == "json":
        return table_json(table)
    if fmt == "votable":
        return table_votable(table)
    return table_text(table)
