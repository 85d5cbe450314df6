"""TAP 1.1 over the archive: ADQL sync and async (UWS 1.1), TAP_SCHEMA, VOSI tables and capabilities.

Tables published: ``ivoa.obscore`` (ObsCore 1.1 plus the Roman columns), ``romanflow.catalog_sources``
(catalog rows by position), ``romanflow.lineage`` (which inputs each product was made from) and the
``TAP_SCHEMA`` tables describing them.

SQLite: each query runs on a connection whose own database is in memory (TAP_SCHEMA and the views
live there) with the archive attached read-only, ``PRAGMA query_only`` set, and a progress handler
that stops it after the time limit. PostgreSQL: the query, translated by queryparser-python3, runs
in a read-only transaction with ``statement_timeout``.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from fastapi import Request

from romanflow.errors import RomanflowError
from romanflow.services import vosi
from romanflow.services.adql import ADQLError, register_functions, to_postgresql, to_sqlite
from romanflow.services.params import NotFound, RequestError, read_params
from romanflow.services.votable import VOTABLE_MIME, ColumnMeta, error_votable, table_votable

TAP_STD = "ivo://ivoa.net/std/TAP"
TABLES_STD = "ivo://ivoa.net/std/VOSI#tables-1.1"
OBSCORE_DM = "ivo://ivoa.net/std/ObsCore#core-1.1"


@dataclass
class TapColumn:
    name: str
    datatype: str  # VOTable datatype: char, int, long, double, ...
    description: str = ""
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    xtype: str | None = None
    arraysize: str | None = None
    principal: int = 0
    indexed: int = 0
    std: int = 0
    sql: str | None = None  # SQL expression of the view (default: the column itself)


@dataclass
class TapTable:
    schema: str
    name: str
    description: str
    source: str  # physical table
    columns: list = field(default_factory=list)
    utype: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def view(self) -> str:
        return f"tap_{self.schema.lower()}_{self.name.lower()}"


#: ObsCore 1.1 mandatory columns the archive does not store, with the values they take here.
_OBSCORE_EXTRA = (
    ("t_resolution", "double", "s", "time.resolution", "Char.TimeAxis.Resolution.Refval.value", "t_exptime",
     "temporal resolution (the exposure time)"),
    ("t_xel", "long", None, "meta.number", "Char.TimeAxis.numBins", "1", "number of time samples"),
    ("em_res_power", "double", None, "spect.resolution", "Char.SpectralAxis.Resolution.ResolPower.refVal",
     "CASE WHEN em_max > em_min THEN (em_max + em_min) / 2.0 / (em_max - em_min) END", "spectral resolving power"),
    ("em_xel", "long", None, "meta.number", "Char.SpectralAxis.numBins", "1", "number of spectral samples"),
    ("pol_xel", "long", None, "meta.number", "Char.PolarizationAxis.numBins", "NULL",
     "number of polarisation samples"),
    ("o_calib_status", "char", None, "meta.code.qual", "Char.ObservableAxis.calibrationStatus",
     "CASE WHEN calib_level >= 2 THEN 'calibrated' ELSE 'raw' END", "calibration status of the observable"),
)
_OBSCORE_DATATYPE = {"calib_level": "int", "s_xel1": "long", "s_xel2": "long", "access_estsize": "long"}
_PRINCIPAL = {"obs_publisher_did", "obs_id", "s_ra", "s_dec", "s_region", "access_url", "dataproduct_type",
              "calib_level", "t_min", "em_min", "em_max", "optical_element", "detector"}
_INDEXED = {"obs_id", "t_min", "t_max", "optical_element", "detector", "product_kind", "s_region"}


def tap_tables() -> list[TapTable]:
    """The tables TAP publishes, with their columns' metadata."""
    from romanflow.archive.schema import OBSCORE_COLUMNS, RESULT_COLUMNS
    from romanflow.services.obscore import obscore_metadata

    meta = obscore_metadata()
    std_names = {c[0] for c in OBSCORE_COLUMNS}
    kinds = {"str": "char", "int": "long", "float": "double"}
    obscore = TapTable("ivoa", "obscore", "IVOA ObsCore 1.1 table of the archive's products (one row per "
                       "product, its current version) with the Roman columns", "obscore",
                       utype="ivo://ivoa.net/std/obscore#table-1.1")
    for name, kind, _, description in RESULT_COLUMNS:
        m = meta[name]
        dt = _OBSCORE_DATATYPE.get(name, kinds[kind])
        obscore.columns.append(TapColumn(name, dt, description, m.unit, m.ucd, m.utype, m.xtype,
                                         "*" if dt == "char" else None, int(name in _PRINCIPAL),
                                         int(name in _INDEXED), int(name in std_names)))
    for name, dt, unit, ucd, utype, sql, description in _OBSCORE_EXTRA:
        obscore.columns.append(TapColumn(name, dt, description, unit, ucd, f"obscore:{utype}", None,
                                         "*" if dt == "char" else None, 0, 0, 1, sql))
    sources = TapTable("romanflow", "catalog_sources", "catalog rows by position (every catalog product's "
                       "sources)", "catalog_sources", columns=[
                           TapColumn("source_pk", "long", "row key", ucd="meta.id;meta.main", principal=1,
                                     indexed=1),
                           TapColumn("catalog_obs_id", "char", "catalog product (ivoa.obscore.obs_id)",
                                     ucd="meta.id", arraysize="*", principal=1, indexed=1),
                           TapColumn("row_index", "long", "row of the source in its catalog file",
                                     ucd="meta.number"),
                           TapColumn("ra", "double", "ICRS right ascension", "deg", "pos.eq.ra;meta.main",
                                     principal=1),
                           TapColumn("dec", "double", "ICRS declination", "deg", "pos.eq.dec;meta.main",
                                     principal=1),
                           TapColumn("fluxes", "char", "fluxes per band, JSON object (nJy)", ucd="phot.flux",
                                     arraysize="*"),
                           TapColumn("healpix29", "long", "HEALPix nested index at depth 29 (NULL on "
                                     "PostgreSQL)", ucd="pos.healpix", indexed=1),
                       ])
    lineage = TapTable("romanflow", "lineage", "what each product version was made from", "lineage", columns=[
        TapColumn("output_obs_id", "char", "the product made", ucd="meta.id", arraysize="*", principal=1,
                  indexed=1),
        TapColumn("input_obs_id", "char", "an input of it", ucd="meta.id", arraysize="*", principal=1, indexed=1),
        TapColumn("role", "char", "science, reference or member", ucd="meta.code", arraysize="*", principal=1),
        TapColumn("detail", "char", "reference type or member detail", ucd="meta.note", arraysize="*"),
    ])
    tables = [obscore, sources, lineage]
    tables += _tap_schema_tables()
    return tables


_TS_COLUMNS = {
    "schemas": [("schema_name", "char", "schema name"), ("utype", "char", "schema utype"),
                ("description", "char", "describes the schema"), ("schema_index", "int", "display order")],
    "tables": [("schema_name", "char", "the schema"), ("table_name", "char", "fully qualified table name"),
               ("table_type", "char", "table or view"), ("utype", "char", "table utype"),
               ("description", "char", "describes the table"), ("table_index", "int", "display order")],
    "columns": [("table_name", "char", "fully qualified table name"), ("column_name", "char", "column name"),
                ("utype", "char", "column utype"), ("ucd", "char", "column UCD"), ("unit", "char", "VOUnit"),
                ("description", "char", "describes the column"), ("datatype", "char", "VOTable datatype"),
                ("arraysize", "char", "VOTable arraysize"), ("xtype", "char", "VOTable xtype"),
                ("size", "int", "deprecated length"), ("principal", "int", "1 for a principal column"),
                ("indexed", "int", "1 for an indexed column"), ("std", "int", "1 for a standard column"),
                ("column_index", "int", "display order")],
    "keys": [("key_id", "char", "key identifier"), ("from_table", "char", "table with the foreign key"),
             ("target_table", "char", "table with the primary key"), ("utype", "char", "key utype"),
             ("description", "char", "describes the key")],
    "key_columns": [("key_id", "char", "key identifier"), ("from_column", "char", "column of from_table"),
                    ("target_column", "char", "column of target_table")],
}


def _tap_schema_tables() -> list[TapTable]:
    out = []
    for name, cols in _TS_COLUMNS.items():
        t = TapTable("TAP_SCHEMA", name, f"TAP_SCHEMA {name}", name, utype=None)
        t.columns = [TapColumn(c, dt, d, arraysize="*" if dt == "char" else None, principal=1, std=1)
                     for c, dt, d in cols]
        out.append(t)
    return out


#: Foreign keys declared in TAP_SCHEMA.keys: (key_id, from_table, target_table, [(from, target)]).
KEYS = [
    ("sources_catalog", "romanflow.catalog_sources", "ivoa.obscore", [("catalog_obs_id", "obs_id")]),
    ("lineage_output", "romanflow.lineage", "ivoa.obscore", [("output_obs_id", "obs_id")]),
    ("ts_tables_schema", "TAP_SCHEMA.tables", "TAP_SCHEMA.schemas", [("schema_name", "schema_name")]),
    ("ts_columns_table", "TAP_SCHEMA.columns", "TAP_SCHEMA.tables", [("table_name", "table_name")]),
    ("ts_keys_from", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables", [("from_table", "table_name")]),
    ("ts_keys_target", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables", [("target_table", "table_name")]),
    ("ts_key_columns_key", "TAP_SCHEMA.key_columns", "TAP_SCHEMA.keys", [("key_id", "key_id")]),
]

#: Column names that are ADQL reserved words: TAP_SCHEMA and /tables name them delimited ("size").
ADQL_RESERVED = {"size", "first", "last", "top", "value", "zone", "date", "time", "position", "level", "type"}


def published_name(name: str) -> str:
    """The column's name as ADQL must write it."""
    return f'"{name}"' if name.lower() in ADQL_RESERVED else name


def tap_schema_rows(tables: list[TapTable]) -> dict[str, list[tuple]]:
    schemas = [("ivoa", None, "IVOA data models (ObsCore)", 0),
               ("romanflow", None, "romanflow's archive tables", 1),
               ("TAP_SCHEMA", None, "description of the tables of this service", 2)]
    trows, crows = [], []
    for k, t in enumerate(tables):
        trows.append((t.schema, t.qualified, "table", t.utype, t.description, k))
        for j, c in enumerate(t.columns):
            crows.append((t.qualified, published_name(c.name), c.utype, c.ucd, c.unit, c.description, c.datatype, c.arraysize,
                          c.xtype, None, c.principal, c.indexed, c.std, j))
    keys = [(k, f, t, None, f"{f} refers to {t}") for k, f, t, _ in KEYS]
    kcols = [(k, a, b) for k, _, _, pairs in KEYS for a, b in pairs]
    return {"schemas": schemas, "tables": trows, "columns": crows, "keys": keys, "key_columns": kcols}


# ----------------------------------------------------------------------------------- execution
@dataclass
class QueryResult:
    names: list
    rows: list
    overflow: bool


class SqliteTap:
    """Runs translated ADQL on a read-only view of the SQLite archive."""

    def __init__(self, db_path: str, tables: list[TapTable], timeout_s: float):
        self.db_path = db_path
        self.tables = tables
        self.timeout_s = timeout_s
        self.table_map = {t.qualified.lower(): t.view for t in tables}
        self._local = threading.local()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        uri = "file:" + self.db_path.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        conn = sqlite3.connect(":memory:", uri=True, check_same_thread=False)
        conn.execute(f"ATTACH DATABASE '{uri.replace(chr(39), chr(39) * 2)}' AS arc")
        register_functions(conn)
        rows = tap_schema_rows(self.tables)
        for t in self.tables:
            if t.schema == "TAP_SCHEMA":
                cols = ", ".join(f'"{c.name}"' for c in t.columns)
                conn.execute(f"CREATE TEMP TABLE {t.view} ({cols})")
                data = rows[t.name]
                if data:
                    marks = ", ".join("?" * len(t.columns))
                    conn.executemany(f"INSERT INTO {t.view} VALUES ({marks})", data)
            else:
                present = {r[1] for r in conn.execute(f"PRAGMA arc.table_info({t.source})")}
                exprs = []
                for c in t.columns:
                    expr = c.sql or (f'"{c.name}"' if c.name in present else "NULL")
                    if c.name == "s_region" and "vertices" in present:  # STC-S from the footprint's vertices
                        expr = ("CASE WHEN vertices IS NOT NULL AND vertices != '' THEN 'POLYGON ICRS ' || vertices "
                                + ("ELSE s_region END" if "s_region" in present else "END"))
                    exprs.append(f'{expr} AS "{c.name}"')
                conn.execute(f"CREATE TEMP VIEW {t.view} AS SELECT {', '.join(exprs)} FROM arc.{t.source}")
        conn.execute("PRAGMA query_only = ON")
        views = {t.view for t in self.tables}
        sources = {t.source for t in self.tables if t.schema != "TAP_SCHEMA"}

        def authorize(action, arg1, arg2, db_name, source):
            # queries read the published views only: the archive's own tables are reached through them
            if action == sqlite3.SQLITE_READ:
                ok = db_name != "arc" or source in views or (arg2 == "" and arg1 in sources)  # COUNT(*) of a view
                return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
            if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE):
                return sqlite3.SQLITE_OK
            return sqlite3.SQLITE_DENY

        conn.set_authorizer(authorize)
        self._local.conn = conn
        return conn

    def run(self, adql: str, maxrec: int) -> QueryResult:
        sql = to_sqlite(adql, self.table_map)
        conn = self._connection()
        deadline = time.monotonic() + self.timeout_s
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
        try:
            cur = conn.execute(sql)
            names = [d[0] for d in cur.description or []]
            rows = cur.fetchmany(maxrec + 1)
            cur.close()
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise ADQLError(f"the query ran longer than the limit of {self.timeout_s:g} s") from None
            raise ADQLError(_sqlite_message(exc)) from None
        except (sqlite3.DatabaseError, sqlite3.Warning, OverflowError, ValueError) as exc:
            raise ADQLError(_sqlite_message(exc)) from None
        finally:
            conn.set_progress_handler(None, 0)
        return QueryResult(names, rows[:maxrec], len(rows) > maxrec)


def _sqlite_message(exc) -> str:
    text = str(exc)
    for t in ("tap_ivoa_", "tap_romanflow_", "tap_tap_schema_"):
        text = text.replace(t, t[4:].replace("_", ".", 1))
    return f"query failed: {text}"


#: PostgreSQL role TAP queries run as.
TAP_ROLE = "romanflow_tap_reader"


class PostgresTap:
    """Runs ADQL translated by queryparser on PostgreSQL (pgSphere), read-only, with a statement timeout."""

    def __init__(self, engine, tables: list[TapTable], timeout_s: float):
        self.engine = engine
        self.tables = tables
        self.timeout_s = timeout_s
        self._ready = False
        self._lock = threading.Lock()

    def _setup(self):
        """Schemas ``ivoa``, ``romanflow`` (views) and ``TAP_SCHEMA`` (tables), made once."""
        from sqlalchemy import text

        with self._lock:
            if self._ready:
                return
            rows = tap_schema_rows(self.tables)
            with self.engine.begin() as conn:
                for schema in ("ivoa", "romanflow", "tap_schema"):
                    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                for t in self.tables:
                    if t.schema == "TAP_SCHEMA":
                        conn.execute(text(f'DROP TABLE IF EXISTS tap_schema."{t.name}"'))
                        cols = ", ".join(f'"{c.name}" {"integer" if c.datatype == "int" else "text"}'
                                         for c in t.columns)
                        conn.execute(text(f'CREATE TABLE tap_schema."{t.name}" ({cols})'))
                        for r in rows[t.name]:
                            marks = ", ".join(f":p{i}" for i in range(len(r)))
                            conn.execute(text(f'INSERT INTO tap_schema."{t.name}" VALUES ({marks})'),
                                         {f"p{i}": v for i, v in enumerate(r)})
                    else:
                        present = {r[0] for r in conn.execute(text(
                            "SELECT column_name FROM information_schema.columns WHERE table_name = :t"),
                            {"t": t.source})}
                        exprs = [f'{(c.sql if c.sql else (chr(34) + c.name + chr(34) if c.name in present else "NULL"))}'
                                 f' AS "{c.name}"' for c in t.columns]
                        conn.execute(text(f'CREATE OR REPLACE VIEW "{t.schema.lower()}"."{t.name}" AS SELECT '
                                          f'{", ".join(exprs)} FROM public."{t.source}"'))
            self._role = None
            try:  # a role that reads the published views only (no archive tables, no server functions)
                with self.engine.begin() as conn:
                    conn.execute(text(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TAP_ROLE}') "
                                      f"THEN CREATE ROLE {TAP_ROLE} NOLOGIN; END IF; END $$"))
                    for schema in ("ivoa", "romanflow", "tap_schema"):
                        conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {TAP_ROLE}'))
                        conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {TAP_ROLE}'))
                    conn.execute(text(f"GRANT {TAP_ROLE} TO CURRENT_USER"))
                self._role = TAP_ROLE
            except Exception as exc:  # noqa: BLE001 - without the privilege to make roles, tables are checked only
                import logging

                logging.getLogger("romanflow.services").warning(
                    "TAP queries run as the archive's own user (no role %s: %s)", TAP_ROLE,
                    str(exc).splitlines()[0])
            self._ready = True

    def _check_tables(self, sql: str) -> None:
        from queryparser.exceptions import QueryError
        from queryparser.postgresql import PostgreSQLQueryProcessor

        try:
            proc = PostgreSQLQueryProcessor(sql)
        except QueryError as exc:
            raise ADQLError(f"the query cannot be run: {exc} (qualify tables: ivoa.obscore)") from None
        except Exception as exc:  # noqa: BLE001 - the processor's other failures are the query's
            raise ADQLError(f"the query cannot be run: {type(exc).__name__}: {exc}") from None
        published = {t.qualified.lower() for t in self.tables}
        for schema, table in proc.tables:
            if f"{schema}.{table}".lower() not in published:
                raise ADQLError(f"no table {schema}.{table}: query {', '.join(sorted(published))}")

    def run(self, adql: str, maxrec: int) -> QueryResult:
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import text

        self._setup()
        sql = to_postgresql(adql).rstrip().rstrip(";")
        if ";" in sql:
            raise ADQLError("one statement per query")
        self._check_tables(sql)
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SET TRANSACTION READ ONLY"))
                if self._role:
                    conn.execute(text(f"SET LOCAL ROLE {self._role}"))
                conn.execute(text(f"SET LOCAL statement_timeout = {int(self.timeout_s * 1000)}"))
                cur = conn.exec_driver_sql(sql)
                names = list(cur.keys())
                rows = cur.fetchmany(maxrec + 1)
                conn.rollback()
        except sa_exc.DBAPIError as exc:
            msg = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
            if "statement timeout" in msg:
                raise ADQLError(f"the query ran longer than the limit of {self.timeout_s:g} s") from None
            raise ADQLError(f"query failed: {msg}") from None
        return QueryResult(names, [tuple(r) for r in rows[:maxrec]], len(rows) > maxrec)


def _pg_value(v):
    if v is None or isinstance(v, (int, float, str, bool)):
        return v
    return str(v)


def result_table(result: QueryResult, tables: list[TapTable]):
    """An astropy Table and its column metadata from query rows, typed by the published columns."""
    from astropy.table import Table

    known = {}
    for t in reversed(tables):
        for c in t.columns:
            known[c.name.lower()] = c
    cols, meta, used = {}, {}, set()
    for k, name in enumerate(result.names):
        label = name if name not in used else f"{name}_{k}"
        used.add(label)
        values = [_pg_value(r[k]) for r in result.rows]
        decl = known.get(str(name).lower())
        nonnull = [v for v in values if v is not None]
        dt = decl.datatype if decl is not None else (
            "long" if nonnull and all(isinstance(v, (int, bool)) for v in nonnull) else
            "double" if nonnull and all(isinstance(v, (int, float)) for v in nonnull) else "char")
        if dt in ("int", "long", "short"):
            ok = all(isinstance(v, (int, bool)) or (isinstance(v, float) and v.is_integer()) for v in nonnull)
            if not ok:
                dt = "double" if all(isinstance(v, (int, float)) for v in nonnull) else "char"
        if dt in ("double", "float") and not all(isinstance(v, (int, float)) for v in nonnull):
            dt = "char"
        if dt in ("int", "long", "short"):
            arr = np.ma.MaskedArray(np.array([0 if v is None else int(v) for v in values],
                                             dtype=np.int32 if dt == "int" else np.int64),
                                    mask=[v is None for v in values])
        elif dt in ("double", "float"):
            arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
        else:
            arr = np.ma.MaskedArray(np.array(["" if v is None else str(v) for v in values] or [], dtype=object),
                                    mask=[v is None for v in values])
        cols[label] = arr
        if decl is not None:
            meta[label] = ColumnMeta(unit=decl.unit, ucd=decl.ucd, description=decl.description, utype=decl.utype,
                                     xtype=decl.xtype)
    table = Table(cols) if cols else Table()
    return table, meta


# ----------------------------------------------------------------------------------- UWS jobs
@dataclass
class Job:
    job_id: str
    params: dict
    phase: str = "PENDING"
    created: float = field(default_factory=time.time)
    start: float | None = None
    end: float | None = None
    execution_duration: int = 60
    destruction: float = 0.0
    error: str | None = None
    result: bytes | None = None
    overflow: bool = False
    runid: str | None = None
    thread: object = None


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(text: str) -> float:
    t = text.strip().replace("Z", "+00:00")
    try:
        d = _dt.datetime.fromisoformat(t)
    except ValueError:
        raise RequestError(f"DESTRUCTION={text!r}: expected an ISO 8601 time") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return d.timestamp()


_UWS_NS = ('xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" xmlns:xlink="http://www.w3.org/1999/xlink" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.1"')


def job_xml(job: Job, base: str) -> bytes:
    def el(tag, value, nil_ok=True):
        if value is None:
            return f'<uws:{tag} xsi:nil="true"/>' if nil_ok else ""
        return f"<uws:{tag}>{escape(str(value))}</uws:{tag}>"

    params = "".join(f'<uws:parameter id={quoteattr(k.lower())}>{escape(v)}</uws:parameter>'
                     for k, v in job.params.items())
    results = ""
    if job.phase == "COMPLETED":
        results = (f'<uws:result id="result" xlink:href={quoteattr(f"{base}/tap/async/{job.job_id}/results/result")}'
                   ' mime-type="application/x-votable+xml"/>')
    error = ""
    if job.phase == "ERROR" and job.error:
        error = (f'<uws:errorSummary type="fatal" hasDetail="true"><uws:message>{escape(job.error)}</uws:message>'
                 '</uws:errorSummary>')
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:job {_UWS_NS}>'
            f'{el("jobId", job.job_id)}{el("runId", job.runid, False)}{el("ownerId", None)}{el("phase", job.phase)}'
            f'{el("quote", None)}{el("creationTime", _iso(job.created), False)}{el("startTime", _iso(job.start))}'
            f'{el("endTime", _iso(job.end))}{el("executionDuration", job.execution_duration)}'
            f'{el("destruction", _iso(job.destruction))}<uws:parameters>{params}</uws:parameters>'
            f'<uws:results>{results}</uws:results>{error}</uws:job>\n')
    return body.encode()


# ----------------------------------------------------------------------------------- routes
ADQL_GEO = ("POINT", "CIRCLE", "POLYGON", "BOX", "CONTAINS", "INTERSECTS", "DISTANCE", "COORD1", "COORD2",
            "AREA", "COORDSYS")


def tap_capabilities(base: str, limits) -> bytes:
    geo = "".join(f"<feature><form>{g}</form></feature>" for g in ADQL_GEO)
    tap = (f'<capability standardID="{TAP_STD}" xsi:type="tr:TableAccess">'
           f'<interface xsi:type="vs:ParamHTTP" role="std" version="1.1"><accessURL use="base">{escape(base)}/tap'
           '</accessURL></interface>'
           f'<dataModel ivo-id="{OBSCORE_DM}">ObsCore-1.1</dataModel>'
           '<language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
           '<description>ADQL 2.0</description>'
           f'<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">{geo}</languageFeatures>'
           '</language>'
           '<outputFormat ivo-id="ivo://ivoa.net/std/TAPRegExt#output-votable-td"><mime>'
           'application/x-votable+xml</mime><alias>votable</alias></outputFormat>'
           '<retentionPeriod><default>86400</default><hard>86400</hard></retentionPeriod>'
           f'<executionDuration><default>{int(limits.query_timeout_s)}</default>'
           f'<hard>{int(limits.query_timeout_s)}</hard></executionDuration>'
           f'<outputLimit><default unit="row">{limits.default_rows}</default>'
           f'<hard unit="row">{limits.max_rows}</hard></outputLimit>'
           '</capability>\n')
    return vosi.capabilities(tap, vosi.capability(TABLES_STD, f"{base}/tap/tables", role_std=False),
                             vosi.vosi_capabilities(f"{base}/tap"))


def tables_xml(tables: list[TapTable]) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<vosi:tableset '
             'xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
             'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
             'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">']
    for schema in dict.fromkeys(t.schema for t in tables):
        parts.append(f"<schema><name>{escape(schema)}</name>")
        for t in (t for t in tables if t.schema == schema):
            parts.append(f'<table type="table"><name>{escape(t.qualified)}</name>'
                         f"<description>{escape(t.description)}</description>")
            if t.utype:
                parts.append(f"<utype>{escape(t.utype)}</utype>")
            for c in t.columns:
                parts.append(f"<column><name>{escape(published_name(c.name))}</name><description>{escape(c.description)}"
                             "</description>")
                if c.unit:
                    parts.append(f"<unit>{escape(c.unit)}</unit>")
                if c.ucd:
                    parts.append(f"<ucd>{escape(c.ucd)}</ucd>")
                if c.utype:
                    parts.append(f"<utype>{escape(c.utype)}</utype>")
                attrs = f' arraysize="{c.arraysize}"' if c.arraysize else ""
                if c.xtype:
                    attrs += f" extendedType={quoteattr(c.xtype)}"
                parts.append(f'<dataType xsi:type="vs:VOTableType"{attrs}>{c.datatype}</dataType>')
                for flag, name in ((c.indexed, "indexed"), (c.principal, "principal"), (c.std, "std")):
                    if flag:
                        parts.append(f"<flag>{name}</flag>")
                parts.append("</column>")
            for k, f, tgt, pairs in KEYS:
                if f == t.qualified:
                    parts.append(f"<foreignKey><targetTable>{escape(tgt)}</targetTable>")
                    for a, b in pairs:
                        parts.append(f"<fkColumn><fromColumn>{a}</fromColumn><targetColumn>{b}</targetColumn>"
                                     "</fkColumn>")
                    parts.append("</foreignKey>")
            parts.append("</table>")
        parts.append("</schema>")
    parts.append("</vosi:tableset>\n")
    return "".join(parts).encode()


class TapService:
    """The TAP engine of one archive: translation, execution, async jobs."""

    def __init__(self, archive, limits):
        self.limits = limits
        self.tables = tap_tables()
        backend = getattr(archive, "backend", "sqlite")
        if backend == "sqlite":
            self.engine = SqliteTap(str(archive.engine.url.database), self.tables, limits.query_timeout_s)
        else:
            self.engine = PostgresTap(archive.engine, self.tables, limits.query_timeout_s)
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.max_jobs = 200

    def check_params(self, params) -> tuple[str, int]:
        request = params.get("REQUEST", "doQuery")
        if request != "doQuery":
            raise RequestError(f"REQUEST={request!r}: only doQuery is supported")
        lang = params.get("LANG")
        if lang is None:
            raise RequestError("LANG is required (LANG=ADQL)")
        if lang.upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
            raise RequestError(f"LANG={lang!r}: only ADQL is supported")
        query = params.get("QUERY")
        if query is None or not query.strip():
            raise RequestError("QUERY is required")
        if len(query) > self.limits.max_query_chars:
            raise RequestError(f"QUERY is longer than {self.limits.max_query_chars} characters", 413)
        fmt = params.get("FORMAT", params.get("RESPONSEFORMAT"))
        if fmt and fmt.split(";")[0].strip().lower() not in ("votable", "application/x-votable+xml", "text/xml",
                                                             "application/xml", "votable/td"):
            raise RequestError(f"FORMAT={fmt!r}: only VOTable is served")
        if params.get("UPLOAD"):
            raise RequestError("UPLOAD is not supported")
        maxrec = params.integer("MAXREC", self.limits.default_rows, maximum=self.limits.max_rows)
        return query, maxrec

    def execute(self, query: str, maxrec: int) -> bytes:
        result = self.engine.run(query, maxrec)
        table, meta = result_table(result, self.tables)
        return table_votable(table, metadata=meta, status="OVERFLOW" if result.overflow else "OK")

    # ------------------------------------------------------------------ jobs
    def create_job(self, params) -> Job:
        with self._lock:
            self._expire()
            if len(self.jobs) >= self.max_jobs:
                raise RequestError("too many jobs; delete finished ones first", 503)
            job = Job(uuid.uuid4().hex[:16], {k: v[-1] for k, v in params.values.items() if k != "PHASE"},
                      execution_duration=int(self.limits.query_timeout_s),
                      destruction=time.time() + 86400, runid=params.get("RUNID"))
            self.jobs[job.job_id] = job
        return job

    def _expire(self):
        now = time.time()
        for k in [k for k, j in self.jobs.items() if j.destruction and j.destruction < now]:
            self.jobs.pop(k, None)

    def job(self, job_id: str) -> Job:
        with self._lock:
            self._expire()
            job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return job

    def run_job(self, job: Job) -> None:
        with self._lock:
            if job.phase not in ("PENDING", "HELD"):
                return
            job.phase = "QUEUED"

        def work():
            job.phase, job.start = "EXECUTING", time.time()
            try:
                from romanflow.services.params import VOParams

                params = VOParams(job.params.items())
                query, maxrec = self.check_params(params)
                body = self.execute(query, maxrec)
                if job.phase == "ABORTED":
                    return
                job.result, job.phase = body, "COMPLETED"
            except (RomanflowError, ValueError) as exc:
                job.error, job.phase = str(exc), "ERROR"
            except Exception as exc:  # noqa: BLE001 - a failed job reports its error through UWS
                job.error, job.phase = f"internal error: {type(exc).__name__}: {exc}", "ERROR"
            finally:
                job.end = time.time()

        job.thread = threading.Thread(target=work, daemon=True, name=f"tap-job-{job.job_id}")
        job.thread.start()


def mount_tap(app, archive, config) -> None:
    """Add the ``/tap`` routes to ``app``."""
    from fastapi.responses import RedirectResponse, Response

    limits = config.limits
    service = TapService(archive, limits)
    app.state.tap = service

    def base_url(request: Request) -> str:
        if config.base_url:
            return config.base_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def xml(body: bytes):
        return Response(body, media_type=vosi.XML_MIME)

    def text(body: str):
        return Response(body, media_type="text/plain")

    @app.get("/tap", include_in_schema=False)
    @app.get("/tap/", include_in_schema=False)
    def tap_root(request: Request):
        base = base_url(request)
        links = "".join(f'<li><a href="{base}/tap/{p}">{p}</a></li>' for p in
                        ("capabilities", "availability", "tables", "sync", "async"))
        from fastapi.responses import HTMLResponse

        return HTMLResponse(f"<!doctype html><title>romanflow TAP</title><h1>romanflow TAP</h1><ul>{links}</ul>")

    @app.api_route("/tap/sync", methods=["GET", "POST"], include_in_schema=False)
    async def tap_sync(request: Request):
        """TAP synchronous query (REQUEST=doQuery, LANG=ADQL, QUERY, MAXREC, FORMAT)."""
        import anyio

        params = await read_params(request, limits.max_body_bytes)
        query, maxrec = service.check_params(params)
        body = await anyio.to_thread.run_sync(lambda: service.execute(query, maxrec))
        return Response(body, media_type=VOTABLE_MIME)

    @app.get("/tap/capabilities", include_in_schema=False)
    def tap_caps(request: Request):
        return xml(tap_capabilities(base_url(request), limits))

    @app.get("/tap/availability", include_in_schema=False)
    def tap_avail():
        return xml(vosi.availability())

    @app.get("/tap/tables", include_in_schema=False)
    def tap_tables_doc():
        return xml(tables_xml(service.tables))

    # ------------------------------------------------------------------ async (UWS)
    @app.get("/tap/async", include_in_schema=False)
    def jobs_list(request: Request):
        base = base_url(request)
        with service._lock:
            jobs = list(service.jobs.values())
        refs = "".join(f'<uws:jobref id={quoteattr(j.job_id)} xlink:href={quoteattr(f"{base}/tap/async/{j.job_id}")}>'
                       f"<uws:phase>{j.phase}</uws:phase></uws:jobref>" for j in jobs if j.phase != "ARCHIVED")
        return xml(f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:jobs {_UWS_NS}>{refs}</uws:jobs>\n'.encode())

    @app.post("/tap/async", include_in_schema=False)
    async def job_create(request: Request):
        params = await read_params(request, limits.max_body_bytes)
        job = service.create_job(params)
        if (params.get("PHASE") or "").upper() == "RUN":
            service.run_job(job)
        return RedirectResponse(f"{base_url(request)}/tap/async/{job.job_id}", status_code=303)

    @app.get("/tap/async/{job_id}", include_in_schema=False)
    def job_get(job_id: str, request: Request, WAIT: float | None = None, PHASE: str | None = None):
        job = service.job(job_id)
        wait = request.query_params.get("WAIT") or request.query_params.get("wait")
        if wait is not None:
            try:
                seconds = min(max(float(wait), 0.0), 60.0) if float(wait) >= 0 else 60.0
            except ValueError:
                raise RequestError(f"WAIT={wait!r}: expected seconds") from None
            deadline = time.time() + seconds
            start_phase = job.phase
            while job.phase == start_phase and job.phase in ("PENDING", "QUEUED", "EXECUTING") \
                    and time.time() < deadline:
                time.sleep(0.05)
        return xml(job_xml(job, base_url(request)))

    @app.post("/tap/async/{job_id}", include_in_schema=False)
    async def job_post(job_id: str, request: Request):
        params = await read_params(request, limits.max_body_bytes)
        job = service.job(job_id)
        action = (params.get("ACTION") or "").upper()
        if action == "DELETE":
            with service._lock:
                service.jobs.pop(job.job_id, None)
            job.phase = "ABORTED" if job.phase in ("QUEUED", "EXECUTING") else job.phase
            return RedirectResponse(f"{base_url(request)}/tap/async", status_code=303)
        if action:
            raise RequestError(f"ACTION={action!r}: only DELETE")
        _update_job(job, params)
        return RedirectResponse(f"{base_url(request)}/tap/async/{job.job_id}", status_code=303)

    @app.delete("/tap/async/{job_id}", include_in_schema=False)
    def job_delete(job_id: str, request: Request):
        job = service.job(job_id)
        with service._lock:
            service.jobs.pop(job.job_id, None)
        return RedirectResponse(f"{base_url(request)}/tap/async", status_code=303)

    def _update_job(job: Job, params):
        if job.phase != "PENDING":
            if any(k not in ("PHASE",) for k in params.values):
                raise RequestError("the job's parameters can change only while it is PENDING", 400)
        for k, v in params.values.items():
            if k != "PHASE":
                job.params[k] = v[-1]
        if params.get("RUNID") is not None:
            job.runid = params.get("RUNID")
        phase = (params.get("PHASE") or "").upper()
        if phase == "RUN":
            service.run_job(job)
        elif phase == "ABORT":
            if job.phase in ("PENDING", "QUEUED", "EXECUTING", "HELD"):
                job.phase, job.end = "ABORTED", time.time()
        elif phase:
            raise RequestError(f"PHASE={phase!r}: RUN or ABORT")

    @app.get("/tap/async/{job_id}/phase", include_in_schema=False)
    def job_phase(job_id: str):
        return text(service.job(job_id).phase)

    @app.post("/tap/async/{job_id}/phase", include_in_schema=False)
    async def job_phase_post(job_id: str, request: Request):
        params = await read_params(request, limits.max_body_bytes)
        job = service.job(job_id)
        phase = (params.get("PHASE") or "").upper()
        if phase not in ("RUN", "ABORT"):
            raise RequestError("PHASE must be RUN or ABORT")
        _update_job(job, params)
        return RedirectResponse(f"{base_url(request)}/tap/async/{job.job_id}", status_code=303)

    @app.get("/tap/async/{job_id}/executionduration", include_in_schema=False)
    def job_duration(job_id: str):
        return text(str(service.job(job_id).execution_duration))

    @app.post("/tap/async/{job_id}/executionduration", include_in_schema=False)
    async def job_duration_post(job_id: str, request: Request):
        params = await read_params(request, limits.max_body_bytes)
        job = service.job(job_id)
        value = params.integer("EXECUTIONDURATION", job.execution_duration, minimum=0)
        job.execution_duration = min(value, int(limits.query_timeout_s)) if value else int(limits.query_timeout_s)
        return RedirectResponse(f"{base_url(request)}/tap/async/{job.job_id}", status_code=303)

    @app.get("/tap/async/{job_id}/destruction", include_in_schema=False)
    def job_destruction(job_id: str):
        return text(_iso(service.job(job_id).destruction))

    @app.post("/tap/async/{job_id}/destruction", include_in_schema=False)
    async def job_destruction_post(job_id: str, request: Request):
        params = await read_params(request, limits.max_body_bytes)
        job = service.job(job_id)
        value = params.get("DESTRUCTION")
        if value:
            job.destruction = min(_parse_iso(value), time.time() + 86400)
        return RedirectResponse(f"{base_url(request)}/tap/async/{job.job_id}", status_code=303)

    @app.get("/tap/async/{job_id}/quote", include_in_schema=False)
    def job_quote(job_id: str):
        service.job(job_id)
        return text("")

    @app.get("/tap/async/{job_id}/owner", include_in_schema=False)
    def job_owner(job_id: str):
        service.job(job_id)
        return text("")

    @app.get("/tap/async/{job_id}/error", include_in_schema=False)
    def job_error(job_id: str):
        job = service.job(job_id)
        if job.phase != "ERROR":
            raise NotFound("the job has no error")
        return Response(error_votable(job.error or "error"), media_type=VOTABLE_MIME)

    @app.get("/tap/async/{job_id}/parameters", include_in_schema=False)
    def job_parameters(job_id: str):
        job = service.job(job_id)
        params = "".join(f'<uws:parameter id={quoteattr(k.lower())}>{escape(v)}</uws:parameter>'
                         for k, v in job.params.items())
        return xml(f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:parameters {_UWS_NS}>{params}'
                   "</uws:parameters>\n".encode())

    @app.post("/tap/async/{job_id}/parameters", include_in_schema=False)
    async def job_parameters_post(job_id: str, request: Request):
        params = await read_params(request, limits.max_body_bytes)
        job = service.job(job_id)
        _update_job(job, params)
        return RedirectResponse(f"{base_url(request)}/tap/async/{job.job_id}", status_code=303)

    @app.get("/tap/async/{job_id}/results", include_in_schema=False)
    def job_results(job_id: str, request: Request):
        job = service.job(job_id)
        res = ""
        if job.phase == "COMPLETED":
            href = f"{base_url(request)}/tap/async/{job.job_id}/results/result"
            res = f'<uws:result id="result" xlink:href={quoteattr(href)} mime-type="application/x-votable+xml"/>'
        return xml(f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:results {_UWS_NS}>{res}</uws:results>\n'.encode())

    @app.get("/tap/async/{job_id}/results/result", include_in_schema=False)
    def job_result(job_id: str):
        job = service.job(job_id)
        if job.phase != "COMPLETED" or job.result is None:
            raise NotFound(f"job {job_id} has no result (phase {job.phase})")
        return Response(job.result, media_type=VOTABLE_MIME)
