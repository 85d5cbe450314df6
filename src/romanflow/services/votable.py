"""VOTable documents the services answer with: result tables, errors, DataLink service descriptors.

Every document has one ``RESOURCE type="results"`` holding the table, followed by an
``INFO name="QUERY_STATUS"`` (``OK``, ``OVERFLOW`` when MAXREC cut the rows, ``ERROR``), as the DAL
clients expect (pyvo reads the last QUERY_STATUS).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from astropy.io.votable.tree import Group, Info, Param, Resource, VOTableFile

VOTABLE_MIME = "application/x-votable+xml"
DATALINK_MIME = "application/x-votable+xml;content=datalink"


@dataclass
class ColumnMeta:
    """What a VOTable FIELD says about a column: unit, UCD, description, utype, xtype."""

    unit: str | None = None
    ucd: str | None = None
    description: str | None = None
    utype: str | None = None
    xtype: str | None = None


@dataclass
class AdhocService:
    """A ``RESOURCE type="meta" utype="adhoc:service"`` block (DataLink/SODA service descriptor).

    ``inputs``: (name, ref or None, value[, datatype, arraysize, xtype, unit]) of each PARAM of the ``inputParams`` group; a ref names the
    FIELD (by ID) of the result table whose value the client copies.
    """

    resource_id: str
    standard_id: str
    access_url: str
    inputs: list = field(default_factory=list)


def _valid_id(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and all(c.isalnum() or c in "_-." for c in name)


_HEAD = ('<?xml version="1.0" encoding="utf-8"?>\n'
         '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3" '
         'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
         'xsi:schemaLocation="http://www.ivoa.net/xml/VOTable/v1.3 http://www.ivoa.net/xml/VOTable/VOTable-1.4.xsd">\n')
_XML_BAD = {c: None for c in range(32) if c not in (9, 10, 13)}


def _text(value) -> str:
    """XML character data of a value (characters XML forbids dropped)."""
    return escape(str(value).translate(_XML_BAD))


def _attr(value) -> str:
    return quoteattr(str(value).translate(_XML_BAD))


def _datatype(col) -> tuple[str, str | None]:
    kind = col.dtype.kind
    if kind == "b":
        return "boolean", None
    if kind in "iu":
        if kind == "u" and col.dtype.itemsize >= 4:
            return "long", None
        return {1: "short", 2: "short", 4: "int"}.get(col.dtype.itemsize, "long"), None
    if kind == "f":
        return ("float" if col.dtype.itemsize == 4 else "double"), None
    return "char", "*"


def _cells(col, datatype: str) -> list[str]:
    """TABLEDATA cells of one column; an empty cell is null (VOTable 1.3+)."""
    data = np.ma.asarray(col)
    mask = np.ma.getmaskarray(data)
    values = data.filled(0 if datatype not in ("char",) else "") if data.dtype.kind != "O" else data.filled(None)
    out = []
    if datatype in ("float", "double"):
        for v, m in zip(values.tolist(), mask.tolist()):
            out.append("" if m else ("NaN" if v != v else repr(float(v))))
    elif datatype in ("short", "int", "long"):
        for v, m in zip(values.tolist(), mask.tolist()):
            out.append("" if m else str(int(v)))
    elif datatype == "boolean":
        for v, m in zip(values.tolist(), mask.tolist()):
            out.append("" if m else ("T" if v else "F"))
    else:
        for v, m in zip(values.tolist(), mask.tolist()):
            if m or v is None:
                out.append("")
            else:
                out.append(_text(v.decode("utf-8", "replace") if isinstance(v, bytes) else v))
    return out


def table_votable(table, *, metadata: dict | None = None, status: str = "OK", status_text: str | None = None,
                  services: list | None = None, table_name: str = "results", infos: dict | None = None) -> bytes:
    """Serialise an astropy Table as a DAL result VOTable (TABLEDATA), written directly.

    Parameters
    ----------
    table : astropy.table.Table
        The rows; column dtypes decide the VOTable datatypes (objects and strings: char).
    metadata : dict
        Column name -> :class:`ColumnMeta`.
    status : str
        ``OK`` or ``OVERFLOW``.
    services : list of AdhocService
        Service descriptors appended as ``meta`` resources.
    """
    metadata = metadata or {}
    parts = [_HEAD, ' <RESOURCE type="results">\n']
    for key, value in (infos or {}).items():
        parts.append(f"  <INFO name={_attr(key)} value={_attr(value)}/>\n")
    status_info = (f'  <INFO name="QUERY_STATUS" value={_attr(status)}>{_text(status_text)}</INFO>\n' if status_text
                   else f'  <INFO name="QUERY_STATUS" value={_attr(status)}/>\n')
    parts.append(status_info)
    parts.append(f"  <TABLE name={_attr(table_name)}>\n")
    columns = []
    used_ids = set()
    for name in table.colnames:
        col = table[name]
        datatype, arraysize = _datatype(col)
        meta = metadata.get(name) or ColumnMeta()
        attrs = [f"name={_attr(name)}"]
        if _valid_id(name) and name not in used_ids:
            attrs.append(f"ID={_attr(name)}")
            used_ids.add(name)
        attrs.append(f'datatype="{datatype}"')
        if arraysize:
            attrs.append(f'arraysize="{arraysize}"')
        for key, value in (("unit", meta.unit), ("ucd", meta.ucd), ("utype", meta.utype), ("xtype", meta.xtype)):
            if value:
                attrs.append(f"{key}={_attr(value)}")
        if meta.description:
            parts.append(f"   <FIELD {' '.join(attrs)}><DESCRIPTION>{_text(meta.description)}</DESCRIPTION></FIELD>\n")
        else:
            parts.append(f"   <FIELD {' '.join(attrs)}/>\n")
        columns.append(_cells(col, datatype))
    parts.append("   <DATA><TABLEDATA>\n")
    for row in zip(*columns):
        parts.append("<TR>" + "".join(f"<TD>{v}</TD>" if v else "<TD/>" for v in row) + "</TR>\n")
    parts.append("   </TABLEDATA></DATA>\n  </TABLE>\n")
    parts.append(status_info)
    parts.append(" </RESOURCE>\n")
    if services:
        vot = VOTableFile(version="1.4")
        for svc in services:
            vot.resources.append(_adhoc_resource(vot, svc))
        xml = _write(vot).decode("utf-8")
        body = xml[xml.index("<RESOURCE"):xml.rindex("</VOTABLE>")]
        parts.append(" " + body)
    parts.append("</VOTABLE>\n")
    return "".join(parts).encode("utf-8")


def _adhoc_resource(vot, svc: AdhocService) -> Resource:
    r = Resource(type="meta", utype="adhoc:service", ID=svc.resource_id)
    r.params.append(Param(vot, name="standardID", ID=f"{svc.resource_id}_standardID", datatype="char", arraysize="*", value=svc.standard_id))
    r.params.append(Param(vot, name="accessURL", ID=f"{svc.resource_id}_accessURL", datatype="char", arraysize="*", value=svc.access_url))
    group = Group(r, name="inputParams")
    for entry in svc.inputs:
        name, ref, value = entry[:3]
        datatype, arraysize, xtype, unit = (tuple(entry[3:]) + ("char", "*", None, None)[len(entry) - 3:])[:4]
        p = Param(vot, name=name, ID=f"{svc.resource_id}_in_{name}", datatype=datatype, arraysize=arraysize,
                  value=value if value is not None else ("" if datatype == "char" else None), ref=ref,
                  xtype=xtype, unit=unit)
        group.entries.append(p)
    r.groups.append(group)
    return r


def _write(vot: VOTableFile) -> bytes:
    buf = io.BytesIO()
    vot.to_xml(buf, tabledata_format="tabledata")
    return buf.getvalue()


def error_votable(message: str) -> bytes:
    """A VOTable holding only ``QUERY_STATUS=ERROR`` with ``message`` (DALI error document)."""
    vot = VOTableFile(version="1.4")
    res = Resource(type="results")
    info = Info(name="QUERY_STATUS", value="ERROR")
    info.content = " ".join(str(message).split())[:2000] or "error"
    res.infos.append(info)
    vot.resources.append(res)
    return _write(vot)
