"""The archive: products registered in a database, found by sky, time and band, with their lineage.

One API over two backends chosen by URL:

* ``sqlite:///DIR/archive.db`` (the embedded default): footprints indexed by HEALPix cells, matches
  refined exactly on the polygons;
* ``postgresql://user@host:port/db``: ``s_region`` is a pgSphere ``spoly`` with a GiST index (cone and
  polygon overlap in SQL), catalog rows have a q3c index.

Writes happen in one transaction per batch, serialised between processes (SQLite ``BEGIN IMMEDIATE``;
a PostgreSQL advisory lock), so a killed ingest leaves nothing half-registered and two concurrent
ingests of the same files register each version once.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from romanflow.archive import sphere
from romanflow.archive.products import KINDS, REFERENCE, ProductRecord, obs_id_of, read_product
from romanflow.archive.schema import RESULT_COLUMNS, SCHEMA_VERSION, build_metadata
from romanflow.archive.tables import rows_to_table
from romanflow.errors import InputFileError, RomanflowError

#: Seconds to wait for a database server before giving up.
CONNECT_TIMEOUT_S = 5
#: Seconds a writer waits for another writer's batch (SQLite busy timeout).
LOCK_TIMEOUT_S = 120
#: Key of the PostgreSQL advisory lock that serialises ingest batches.
_PG_LOCK_KEY = 0x726F6D61
_SQLITE_IN_CHUNK = 5000  #: values per IN list on SQLite (its limit is 32766 variables a statement)
#: File-name patterns of products when a folder is ingested, in the order levels are ingested.
PRODUCT_PATTERNS = ("roman_wfi_*.asdf", "*_uncal.asdf", "*_cal.asdf", "*_cat.parquet", "*_coadd.asdf",
                    "*_outliers.parquet", "*_asn.json", "*_forced.parquet",
                    "*_injection_input.parquet", "*_injection_output.parquet")
#: Ingest order of kinds, so that a product's inputs are registered before it within one call.
_KIND_RANK = {"reference": 0, "uncal": 1, "cal": 2, "source_table": 3, "coadd": 4, "outlier_record": 5,
              "association": 5, "catalog": 6}
_DERIVED = ("source_table", "outlier_record", "catalog", "association")


class ArchiveError(RomanflowError):
    """A problem with the archive or a request to it, reported as one line."""


@dataclass
class IngestReport:
    """What one ingest did: obs_ids by outcome, and files that could not be registered."""

    registered: list = field(default_factory=list)  #: new products (version 1)
    updated: list = field(default_factory=list)  #: new versions of known products
    unchanged: list = field(default_factory=list)  #: files already registered as they are
    failed: dict = field(default_factory=dict)  #: path -> problem
    flagged: dict = field(default_factory=dict)  #: obs_id -> flags (e.g. no_wcs: registered without footprint)
    seconds: float = 0.0

    @property
    def n_files(self) -> int:
        return len(self.registered) + len(self.updated) + len(self.unchanged) + len(self.failed)

    def summary(self) -> str:
        return (f"{len(self.registered)} new, {len(self.updated)} new version(s), {len(self.unchanged)} unchanged, "
                f"{len(self.failed)} failed, {len(self.flagged)} flagged, {self.seconds:.2f} s")


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _parse_url(url: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = str(url).strip()
    if "://" not in text and text.endswith(".db"):
        text = "sqlite:///" + str(Path(text).resolve())
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise ArchiveError(f"--db {url!r}: malformed database URL ({exc}); expected sqlite:///DIR/archive.db "
                           "or postgresql://user@host:port/db") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ArchiveError(f"--db {url!r}: unsupported database {backend!r}; expected sqlite:///DIR/archive.db "
                           "or postgresql://user@host:port/db")
    if backend == "sqlite" and not parsed.database:
        raise ArchiveError(f"--db {url!r}: an SQLite URL needs a file, e.g. sqlite:///DIR/archive.db")
    if backend == "postgresql":
        try:
            port = parsed.port
        except ValueError:
            port = None
            raise ArchiveError(f"--db {url!r}: malformed port") from None
        if port is not None and not 0 < port < 65536:
            raise ArchiveError(f"--db {url!r}: port {port} out of range")
    return parsed, backend


def default_url(root) -> str:
    """The embedded default archive of a folder: ``sqlite:///ROOT/archive.db``."""
    return f"sqlite:///{Path(root).resolve() / 'archive.db'}"


class Archive:
    """A product archive (open with :meth:`open`)."""

    def __init__(self, engine, backend: str, root: Path, url: str):
        self.engine = engine
        self.backend = backend
        self.root = root
        self.url = url
        self.metadata = build_metadata(backend)
        self.t = self.metadata.tables
        self._inserted: dict[str, int] = {}  #: rows this object inserted per table since its statistics were refreshed

    # ------------------------------------------------------------------------------------------ open
    @classmethod
    def open(cls, url, root=None, *, create: bool = True) -> "Archive":
        """Connect to (and, with ``create``, initialise) the archive at ``url``.

        ``root`` is the folder file URIs are relative to: the database's folder by default on SQLite,
        required on PostgreSQL.
        """
        from sqlalchemy import create_engine, event
        from sqlalchemy.exc import DBAPIError, OperationalError

        parsed, backend = _parse_url(url)
        if backend == "sqlite":
            db = Path(parsed.database).expanduser()
            try:
                db = db.resolve()
                if not db.parent.is_dir():
                    if not create:
                        raise ArchiveError(f"{db}: no such archive")
                    db.parent.mkdir(parents=True, exist_ok=True)
                if not create and not db.is_file():
                    raise ArchiveError(f"{db}: no such archive")
            except OSError as exc:
                raise ArchiveError(f"--db {str(url)[:80]!r}: {exc.strerror or exc}") from None
            root = Path(root).resolve() if root is not None else db.parent
            engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": LOCK_TIMEOUT_S})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn, _record):
                dbapi_conn.isolation_level = None  # transactions are begun explicitly below
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout = {LOCK_TIMEOUT_S * 1000}")
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
                cur.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn):
                immediate = conn.get_execution_options().get("writer", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        else:
            if root is None:
                raise ArchiveError(f"{parsed.render_as_string(hide_password=True)}: a PostgreSQL archive needs "
                                   "its root folder (--root DIR / root=): file URIs are relative to it")
            root = Path(root).resolve()
            engine = create_engine(parsed.set(drivername="postgresql+psycopg"),
                                   connect_args={"connect_timeout": CONNECT_TIMEOUT_S}, pool_pre_ping=True)
        shown = parsed.render_as_string(hide_password=True)
        arc = cls(engine, backend, root, shown)
        try:
            arc._initialise(create)
        except OperationalError as exc:
            engine.dispose()
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()
            raise ArchiveError(f"cannot open the archive at {shown}: {reason[0] if reason else exc}") from None
        except DBAPIError as exc:
            engine.dispose()
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()
            raise ArchiveError(f"archive at {shown}: {reason[0] if reason else exc}") from None
        return arc

    def _initialise(self, create: bool) -> None:
        from sqlalchemy import select, text

        info = self.t["archive_info"]
        with self._writer() as conn:
            if self.backend == "postgresql":
                if create:
                    conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_sphere"))
                    conn.execute(text("CREATE EXTENSION IF NOT EXISTS q3c"))
            if create:
                self.metadata.create_all(conn)
                if self.backend == "postgresql":
                    conn.execute(text("CREATE INDEX IF NOT EXISTS catalog_sources_q3c ON catalog_sources "
                                      "(q3c_ang2ipix(ra, dec))"))
            version = conn.execute(select(info.c.value).where(info.c.key == "schema_version")).scalar()
            if version is None:
                if not create:
                    raise ArchiveError(f"{self.url}: not a romanflow archive (no archive_info)")
                conn.execute(info.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
            elif int(version) != SCHEMA_VERSION:
                raise ArchiveError(f"{self.url}: archive schema version {version}, this romanflow reads "
                                   f"{SCHEMA_VERSION}")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Archive({self.url!r}, root={str(self.root)!r})"

    # ------------------------------------------------------------------------------------------ transactions
    @contextmanager
    def _writer(self):
        """A write transaction, serialised against every other writer of this archive."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            conn = conn.execution_options(writer=True)
            with conn.begin():
                if self.backend == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                yield conn

    @contextmanager
    def _reader(self):
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    # ------------------------------------------------------------------------------------------ ingest
    def relative_uri(self, path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), self.root)).as_posix()

    def ingest(self, paths, *, batch: int = 500, progress=None) -> IngestReport:
        """Register product files (and the product files under folders); idempotent.

        An unchanged file changes nothing; a file whose bytes changed becomes the next version of its
        product, the previous one kept as superseded. A file that cannot be read is reported in
        ``failed`` and skipped; an image without a usable WCS is registered without footprint and
        flagged. Each batch of ``batch`` files is one transaction.
        """
        start = time.perf_counter()
        report = IngestReport()
        files = expand_paths(paths)
        batch = max(1, int(batch))
        for i in range(0, len(files), batch):
            chunk = files[i:i + batch]
            known = self._known_files([self.relative_uri(p) for p in chunk])
            records = []
            for path in chunk:
                uri = self.relative_uri(path)
                try:
                    st = path.stat()
                    hit = known.get(uri)
                    if hit and hit["size"] == st.st_size and hit["mtime_ns"] == st.st_mtime_ns:
                        report.unchanged.append(hit["obs_id"])
                        continue
                    record = read_product(path)
                    sha = sha256_of(path)
                except InputFileError as exc:
                    report.failed[str(path)] = exc.problem
                    continue
                except OSError as exc:
                    report.failed[str(path)] = exc.strerror or str(exc)
                    continue
                records.append((record, {"uri": uri, "sha256": sha, "size": st.st_size,
                                         "mtime_ns": st.st_mtime_ns}))
            if records:
                self.ingest_records(records, report)
            if progress is not None:
                progress(len(chunk))
        report.seconds = time.perf_counter() - start
        return report

    def in_clauses(self, column, values) -> list:
        """Clauses ``column IN values``, as few as the backend takes: one comparison with an array parameter
        on PostgreSQL (a long IN list costs it more to plan than to run), chunks of 5000 on SQLite."""
        values = list(values)
        if not values:
            return []
        if self.backend == "postgresql":
            from sqlalchemy import any_, bindparam
            from sqlalchemy.dialects.postgresql import ARRAY

            return [column == any_(bindparam(None, values, type_=ARRAY(column.type)))]
        return [column.in_(values[k:k + _SQLITE_IN_CHUNK]) for k in range(0, len(values), _SQLITE_IN_CHUNK)]

    def _known_files(self, uris) -> dict:
        from sqlalchemy import select

        f = self.t["files"]
        out = {}
        with self._reader() as conn:
            for clause in self.in_clauses(f.c.uri, uris):
                for row in conn.execute(select(f.c.uri, f.c.obs_id, f.c.size, f.c.mtime_ns).where(clause)).mappings():
                    out[row["uri"]] = dict(row)
        return out

    def ingest_records(self, records, report: IngestReport | None = None) -> IngestReport:
        """Register already-read records ``[(ProductRecord, {uri, sha256, size, mtime_ns}), ...]`` in one transaction."""
        report = report if report is not None else IngestReport()
        ordered = sorted(records, key=lambda r: (_KIND_RANK.get(r[0].kind, 9), r[1]["uri"]))
        groups, seen, current_rank = [[]], set(), None
        for rec in ordered:
            rank = _KIND_RANK.get(rec[0].kind, 9)
            if rec[0].obs_id in seen or (current_rank is not None and rank != current_rank):
                groups.append([])
                seen = set()
            groups[-1].append(rec)
            seen.add(rec[0].obs_id)
            current_rank = rank
        outcome = IngestReport()
        with self._writer() as conn:
            for group in groups:
                if group:
                    self._register_group(conn, group, outcome)
        self._refresh_statistics()
        report.registered += outcome.registered
        report.updated += outcome.updated
        report.unchanged += outcome.unchanged
        report.flagged.update(outcome.flagged)
        return report

    def _register_group(self, conn, group, report: IngestReport) -> None:
        """Register records with distinct obs_ids inside the open transaction ``conn``."""
        from sqlalchemy import delete, select, update

        f, o, src = self.t["files"], self.t["obscore"], self.t["catalog_sources"]
        ids = [r.obs_id for r, _ in group]
        versions: dict[str, list] = {}
        for clause in self.in_clauses(f.c.obs_id, ids):
            for row in conn.execute(select(f.c.obs_id, f.c.file_id, f.c.version, f.c.sha256, f.c.status)
                                    .where(clause)).mappings():
                versions.setdefault(row["obs_id"], []).append(dict(row))
        now = time.time()
        todo = []
        for record, info in group:
            known = versions.get(record.obs_id, [])
            if any(v["sha256"] == info["sha256"] for v in known):
                report.unchanged.append(record.obs_id)
                continue
            todo.append((record, info, known))
        if not todo:
            return
        self._inherit_from_inputs(conn, [r for r, _, _ in todo if r.kind in _DERIVED])
        superseded = [v["file_id"] for _, _, known in todo for v in known if v["status"] == "current"]
        replaced = [r.obs_id for r, _, known in todo if known]
        if superseded:
            for clause in self.in_clauses(f.c.file_id, superseded):
                conn.execute(update(f).where(clause).values(status="superseded"))
        if replaced:
            for k in range(0, len(replaced), 500):
                part = replaced[k:k + 500]
                if self.backend == "sqlite":
                    cells = self.t["footprint_cells"]
                    pks = select(o.c.obs_pk).where(o.c.obs_id.in_(part)).scalar_subquery()
                    conn.execute(delete(cells).where(cells.c.obs_pk.in_(pks)))
                conn.execute(delete(o).where(o.c.obs_id.in_(part)))
                conn.execute(delete(src).where(src.c.catalog_obs_id.in_(part)))
        # identifiers are given here (this transaction holds the writer lock), so rows go in as plain
        # executemany batches without RETURNING
        next_file = self._next_id(conn, "files", "file_id")
        next_obs = self._next_id(conn, "obscore", "obs_pk")
        file_rows, obs_rows, cell_rows, edges = [], [], [], []
        texts, caps = _footprint_batch([r.vertices for r, _, _ in todo])
        for k, (record, info, known) in enumerate(todo):
            fid, pk = next_file + k, next_obs + k
            version = 1 + max((v["version"] for v in known), default=0)
            file_rows.append((fid, record.obs_id, version, info["uri"], info["sha256"], int(info["size"]),
                              info.get("mtime_ns"), "current", now))
            row = [record.columns.get(name) for name in self._result_names]
            row += [version, info["sha256"], pk, fid, texts[k],
                    json.dumps(record.ref_files, sort_keys=True) if record.ref_files else None, now]
            if self.backend == "postgresql":
                row.append(_spoly_text(record.vertices))
            elif caps[k] is not None:
                cell_rows.extend((int(c), pk) for c in sphere.cap_cells(*caps[k]))
            obs_rows.append(tuple(v.item() if isinstance(v, np.generic) else v for v in row))
            edges.extend((fid, record.obs_id, inp, role, detail or "") for inp, role, detail in dict.fromkeys(record.inputs))
            if record.columns.get("flags"):
                report.flagged[record.obs_id] = record.columns["flags"]
            (report.updated if known else report.registered).append(record.obs_id)
        self._executemany(conn, "files", ("file_id", "obs_id", "version", "uri", "sha256", "size", "mtime_ns",
                                          "status", "ingested_at"), file_rows)
        obs_cols = self._result_names + ("version", "sha256", "obs_pk", "file_id", "vertices", "ref_files",
                                         "ingested_at")
        if self.backend == "postgresql":
            obs_cols += ("s_region",)
        self._executemany(conn, "obscore", obs_cols, obs_rows)
        if cell_rows:
            self._executemany(conn, "footprint_cells", ("cell", "obs_pk"), cell_rows)
        if edges:
            self._executemany(conn, "lineage", ("output_file_id", "output_obs_id", "input_obs_id", "role", "detail"),
                              edges)
        for record, _, _ in todo:
            if record.sources is not None:
                self._insert_sources(conn, record)

    _result_names = tuple(name for name, _, _, _ in RESULT_COLUMNS if name not in ("s_region", "version", "sha256"))

    def _next_id(self, conn, table: str, column: str) -> int:
        from sqlalchemy import text

        return int(conn.execute(text(f"SELECT COALESCE(MAX({column}), 0) FROM {table}")).scalar()) + 1

    def _refresh_statistics(self) -> None:
        """ANALYZE the PostgreSQL tables that grew by more than a fifth since the planner last sampled them.

        Autovacuum samples a table only after a delay, and until then the planner sees the counts of the empty
        table: one lineage step over 2e4 products went from 4 ms to 140 ms (a sequential scan of ``files``).
        Tables grow geometrically between refreshes, so a bulk ingest pays for O(log n) samples.
        """
        if self.backend != "postgresql" or not self._inserted:
            return
        from sqlalchemy import bindparam, text

        names = sorted(self._inserted)
        with self.engine.connect() as conn:
            known = dict(conn.execute(text("SELECT relname, reltuples FROM pg_class WHERE relname IN :names")
                                      .bindparams(bindparam("names", expanding=True)), {"names": names}).all())
        stale = [n for n in names if self._inserted[n] > 0.2 * max(float(known.get(n, -1)), 0.0)]
        if not stale:
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in stale:
                conn.execute(text(f"ANALYZE {name}"))  # our own table names
                del self._inserted[name]

    def _executemany(self, conn, table: str, columns, rows) -> None:
        """Insert ``rows`` (tuples in ``columns`` order) through the driver: SQLite's executemany, PostgreSQL's
        COPY (text format: pgSphere parses ``s_region`` from its text form). Table and column names are ours."""
        self._inserted[table] = self._inserted.get(table, 0) + len(rows)
        cursor = conn.connection.driver_connection.cursor()
        try:
            if self.backend == "postgresql":
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                                   rows)
        finally:
            cursor.close()

    def _inherit_from_inputs(self, conn, records) -> None:
        """Derived products (catalogs, source tables, outlier records) take time span and footprint
        from their registered inputs where their own files do not carry them."""
        from sqlalchemy import select

        o = self.t["obscore"]
        wanted = sorted({inp for r in records for inp, role, _ in r.inputs if role != REFERENCE})
        if not wanted:
            return
        rows = {}
        for clause in self.in_clauses(o.c.obs_id, wanted):
            for row in conn.execute(select(o.c.obs_id, o.c.t_min, o.c.t_max, o.c.t_exptime, o.c.vertices,
                                           o.c.detector, o.c.optical_element, o.c.s_resolution)
                                    .where(clause)).mappings():
                rows[row["obs_id"]] = row
        for r in records:
            found = [rows[i] for i, role, _ in r.inputs if i in rows and role != REFERENCE]
            if not found:
                continue
            c = r.columns
            tmins = [x["t_min"] for x in found if x["t_min"] is not None]
            tmaxs = [x["t_max"] for x in found if x["t_max"] is not None]
            if c.get("t_min") is None and tmins:
                c["t_min"] = min(tmins)
            if c.get("t_max") is None and tmaxs:
                c["t_max"] = max(tmaxs)
            if r.kind == "source_table":
                c["t_exptime"] = c.get("t_exptime") or found[0]["t_exptime"]
                c["detector"] = c.get("detector") or found[0]["detector"]
            if c.get("s_resolution") is None:
                c["s_resolution"] = found[0]["s_resolution"]
            if c.get("optical_element") is None and found[0]["optical_element"]:
                from romanflow.archive.products import BANDPASS_M

                c["optical_element"] = found[0]["optical_element"]
                c["em_min"], c["em_max"] = BANDPASS_M.get(c["optical_element"], (None, None))
            if r.vertices is None:
                text = next((x["vertices"] for x in found if x["vertices"]), None)
                if text:
                    from romanflow.archive.products import footprint_columns

                    r.vertices = _vertices_from_text(text)
                    c.update(footprint_columns(r.vertices))

    def _insert_sources(self, conn, record: ProductRecord) -> None:
        ra, dec, fluxes = record.sources()
        ok = np.isfinite(ra) & np.isfinite(dec)
        idx = np.flatnonzero(ok)
        if not len(idx):
            return
        cells = sphere.point_cells(ra[idx], dec[idx]) if self.backend == "sqlite" else None
        names = list(fluxes)
        rows = []
        for j, i in enumerate(idx.tolist()):
            flux = {n: (float(fluxes[n][i]) if np.isfinite(fluxes[n][i]) else None) for n in names}
            rows.append((record.obs_id, i, float(ra[i]) % 360.0, float(dec[i]), json.dumps(flux),
                         int(cells[j]) if cells is not None else None))
        self._executemany(conn, "catalog_sources", ("catalog_obs_id", "row_index", "ra", "dec", "fluxes", "healpix29"),
                          rows)

    # ------------------------------------------------------------------------------------------ search
    def search(self, *, ra=None, dec=None, radius=None, polygon=None, time_range=None, band=None, level=None,
               detector=None, kind=None, maxrec=None, include_flagged: bool = True):
        """Current products meeting every criterion, as an astropy Table (see :meth:`search_rows`)."""
        return rows_to_table(self.search_rows(ra=ra, dec=dec, radius=radius, polygon=polygon, time_range=time_range,
                                              band=band, level=level, detector=detector, kind=kind, maxrec=maxrec,
                                              include_flagged=include_flagged), RESULT_COLUMNS)

    def search_rows(self, *, ra=None, dec=None, radius=None, polygon=None, time_range=None, band=None, level=None,
                    detector=None, kind=None, maxrec=None, include_flagged: bool = True) -> list[dict]:
        """Current products meeting every criterion given, as an astropy Table of ObsCore + Roman columns.

        ``ra``, ``dec``, ``radius`` (deg): footprints overlapping the cone. ``polygon``: footprints
        overlapping it, as an STC-S string or a sequence of (ra, dec) vertices (deg). ``time_range``:
        (start, end) as MJD numbers, ISO strings or astropy Times; products whose [t_min, t_max]
        overlaps it. ``band``: filter name. ``level``: 0-4 (ObsCore calib_level) or L1/L2/L3/L4/ref.
        ``detector``: WFI01..WFI18. ``kind``: product kind (see :data:`~romanflow.archive.products.KINDS`).
        Each of band/level/detector/kind may also be a list (any of them).
        """
        from sqlalchemy import and_, bindparam, literal_column, or_, select, text

        o = self.t["obscore"]
        where = []
        cone = _check_cone(ra, dec, radius)
        query_poly = _check_polygon(polygon) if polygon is not None else None
        if time_range is not None:
            t0, t1 = _check_time_range(time_range)
            where.append(and_(o.c.t_min <= t1, _coalesce(o.c.t_max, o.c.t_min) >= t0))
        if band is not None:
            bands = _check_values("band", band, _band_names())
            where.append(or_(*[(literal_column("' '") + o.c.optical_element + literal_column("' '"))
                               .like(f"% {b} %") for b in bands]))
        if level is not None:
            levels = _as_list(level)
            conds = []
            for lv in levels:
                s = str(lv).strip()
                if s.upper() in ("L1", "L2", "L3", "L4"):
                    conds.append(o.c.calib_level == int(s[1]))
                elif s.lower() == "ref":
                    conds.append(o.c.product_level == "ref")
                elif s.isdigit() and 0 <= int(s) <= 4:
                    conds.append(o.c.calib_level == int(s))
                else:
                    raise ArchiveError(f"level={lv!r}: expected 0-4, L1, L2, L3, L4 or ref")
            where.append(or_(*conds))
        if detector is not None:
            from romanflow.detector import DETECTORS

            where.append(o.c.detector.in_(_check_values("detector", detector, DETECTORS)))
        if kind is not None:
            where.append(o.c.product_kind.in_(_check_values("kind", kind, tuple(KINDS), upper=False)))
        if not include_flagged:
            where.append(o.c.flags.is_(None))
        if maxrec is not None:
            try:
                maxrec = int(maxrec)
            except (TypeError, ValueError):
                raise ArchiveError(f"maxrec={maxrec!r}: expected a non-negative integer") from None
            if maxrec < 0:
                raise ArchiveError(f"maxrec={maxrec!r}: expected a non-negative integer")
        columns = [o.c[name] for name, _, _, _ in RESULT_COLUMNS if name != "s_region"] + [o.c.vertices]
        refine = []
        if self.backend == "postgresql":
            if cone:
                where.append(text("s_region && scircle(spoint(radians(:c_ra), radians(:c_dec)), radians(:c_r))")
                             .bindparams(bindparam("c_ra", cone[0]), bindparam("c_dec", cone[1]),
                                         bindparam("c_r", cone[2])))
            if query_poly is not None:
                where.append(text("s_region && CAST(:q_poly AS spoly)")
                             .bindparams(bindparam("q_poly", _spoly_text(query_poly))))
        else:
            if cone:
                where.append(o.c.obs_pk.in_(self._cell_candidates(sphere.cap_ranges(*cone, sphere.INDEX_DEPTH))))
                where.append(_near_centre(o, *cone))
                refine.append(lambda v, c=cone: sphere.cone_overlaps(v, *c))
            if query_poly is not None:
                centre, rad = sphere.bounding_cap(query_poly)
                cra, cdec = sphere.radec(centre)
                where.append(o.c.obs_pk.in_(self._cell_candidates(
                    sphere.cap_ranges(float(cra), float(cdec), rad, sphere.INDEX_DEPTH))))
                where.append(_near_centre(o, float(cra), float(cdec), rad))
                refine.append(lambda v, q=query_poly: sphere.polygon_overlaps(v, q))
        with self._reader() as conn:
            if refine:
                # footprints first, whole rows only for those the exact test keeps (about a third of the
                # index's candidates for a 3' cone)
                found = conn.execute(select(o.c.obs_pk, o.c.vertices).where(*where)).all()
                keep = _exact_overlaps([v for _, v in found], refine)
                pks = [pk for (pk, _), k in zip(found, keep) if k]
                rows = []
                for clause in self.in_clauses(o.c.obs_pk, pks):
                    result = conn.execute(select(*columns).where(clause))
                    names = tuple(result.keys())
                    rows += [dict(zip(names, r)) for r in result.all()]
                rows.sort(key=lambda r: r["obs_id"])
            else:
                stmt = select(*columns).where(*where).order_by(o.c.obs_id)
                if maxrec is not None:
                    stmt = stmt.limit(maxrec)
                rows = [dict(r) for r in conn.execute(stmt).mappings()]
        if maxrec is not None:
            rows = rows[:maxrec]
        for r in rows:
            v = r.pop("vertices")
            r["s_region"] = _stcs_from_vertices_text(v)
        return rows

    def _cell_candidates(self, ranges):
        from sqlalchemy import or_, select

        cells = self.t["footprint_cells"]
        conds = [cells.c.cell == int(a) if a == b else cells.c.cell.between(int(a), int(b)) for a, b in ranges]
        return select(cells.c.obs_pk).where(or_(*conds)).distinct()

    # ------------------------------------------------------------------------------------------ products
    def product(self, obs_id) -> dict:
        """The current version of one product: its columns, ``path`` (absolute) and ``uri``."""
        from sqlalchemy import select

        o, f = self.t["obscore"], self.t["files"]
        obs_id = _check_obs_id(obs_id)
        columns = [o.c[name] for name, _, _, _ in RESULT_COLUMNS if name != "s_region"]
        with self._reader() as conn:
            row = conn.execute(select(*columns, o.c.vertices, o.c.ref_files, f.c.uri)
                               .join(f, f.c.file_id == o.c.file_id).where(o.c.obs_id == obs_id)).mappings().first()
        if row is None:
            raise ArchiveError(f"{obs_id}: no such product in the archive {self.url}")
        out = dict(row)
        v = out.pop("vertices")
        out["s_region"] = _stcs_from_vertices_text(v)
        out["ref_files"] = json.loads(out["ref_files"]) if out["ref_files"] else {}
        out["path"] = (self.root / out["uri"]).resolve()
        return out

    def versions(self, obs_id):
        """Every registered version of a product (oldest first) as a Table: version, status, uri, sha256, size."""
        from sqlalchemy import select

        f = self.t["files"]
        obs_id = _check_obs_id(obs_id)
        with self._reader() as conn:
            rows = [dict(r) for r in conn.execute(select(f.c.version, f.c.status, f.c.uri, f.c.sha256, f.c.size,
                                                         f.c.ingested_at).where(f.c.obs_id == obs_id)
                                                  .order_by(f.c.version)).mappings()]
        return rows_to_table(rows, (("version", "int", "", ""), ("status", "str", "", ""), ("uri", "str", "", ""),
                                    ("sha256", "str", "", ""), ("size", "int", "byte", ""),
                                    ("ingested_at", "float", "s", "")))

    def counts(self) -> dict:
        """Rows per table."""
        from sqlalchemy import func, select

        with self._reader() as conn:
            return {name: conn.execute(select(func.count()).select_from(t)).scalar()
                    for name, t in self.t.items()}

    # ------------------------------------------------------------------------------------------ lineage
    def lineage(self, obs_id, direction: str = "up"):
        """Every product upstream (inputs, their inputs, ...) or downstream of ``obs_id``, to the ends.

        Rows: obs_id, depth (1 = direct), parent (the product it was reached from), role (science,
        reference, member), detail (reference type), product_kind, product_level, in_archive.
        """
        from sqlalchemy import select

        if direction not in ("up", "down"):
            raise ArchiveError(f"direction={direction!r}: expected 'up' or 'down'")
        obs_id = _check_obs_id(obs_id)
        self.product(obs_id)  # raises if unknown
        lin, f, o = self.t["lineage"], self.t["files"], self.t["obscore"]
        rows, seen, frontier, depth = [], {obs_id}, [obs_id], 0
        with self._reader() as conn:
            while frontier:
                depth += 1
                nxt = []
                for clause in self.in_clauses(lin.c.output_obs_id if direction == "up" else lin.c.input_obs_id,
                                              frontier):
                    if direction == "up":
                        stmt = (select(lin.c.output_obs_id.label("parent"), lin.c.input_obs_id.label("obs_id"),
                                       lin.c.role, lin.c.detail)
                                .join(f, f.c.file_id == lin.c.output_file_id)
                                .where(f.c.status == "current", clause))
                    else:
                        stmt = (select(lin.c.input_obs_id.label("parent"), lin.c.output_obs_id.label("obs_id"),
                                       lin.c.role, lin.c.detail)
                                .join(f, f.c.file_id == lin.c.output_file_id)
                                .where(f.c.status == "current", clause))
                    for r in conn.execute(stmt).mappings():
                        if r["obs_id"] in seen:
                            continue
                        seen.add(r["obs_id"])
                        rows.append({**dict(r), "depth": depth})
                        nxt.append(r["obs_id"])
                frontier = sorted(nxt)
            ids = [r["obs_id"] for r in rows]
            info = {}
            for clause in self.in_clauses(o.c.obs_id, ids):
                for r in conn.execute(select(o.c.obs_id, o.c.product_kind, o.c.product_level)
                                      .where(clause)).mappings():
                    info[r["obs_id"]] = r
        for r in rows:
            i = info.get(r["obs_id"])
            r["product_kind"] = i["product_kind"] if i else None
            r["product_level"] = i["product_level"] if i else None
            r["in_archive"] = i is not None
        rows.sort(key=lambda r: (r["depth"], r["obs_id"]))
        return rows_to_table(rows, LINEAGE_COLUMNS)

    def downstream(self, obs_ids) -> set:
        """Every current product made, directly or not, from any of ``obs_ids`` (not including them)."""
        from sqlalchemy import select

        lin, f = self.t["lineage"], self.t["files"]
        seen, frontier = set(obs_ids), sorted(set(obs_ids))
        out = set()
        with self._reader() as conn:
            while frontier:
                nxt = []
                for clause in self.in_clauses(lin.c.input_obs_id, frontier):
                    stmt = (select(lin.c.output_obs_id).join(f, f.c.file_id == lin.c.output_file_id)
                            .where(f.c.status == "current", clause, lin.c.role != REFERENCE))
                    for (oid,) in conn.execute(stmt):
                        if oid not in seen:
                            seen.add(oid)
                            out.add(oid)
                            nxt.append(oid)
                frontier = sorted(nxt)
        return out

    # ------------------------------------------------------------------------------------------ catalog rows
    def cone_sources(self, ra, dec, radius, *, catalog=None, maxrec=None):
        """Catalog rows within ``radius`` (deg) of (ra, dec): catalog_obs_id, row_index, ra, dec, distance
        (deg) and one column per flux in the catalogs found (null where a catalog lacks it)."""
        from sqlalchemy import bindparam, or_, select, text

        cone = _check_cone(ra, dec, radius)
        src = self.t["catalog_sources"]
        cols = [src.c.catalog_obs_id, src.c.row_index, src.c.ra, src.c.dec, src.c.fluxes]
        where = []
        if catalog is not None:
            where.append(src.c.catalog_obs_id == _check_obs_id(catalog))
        if self.backend == "postgresql":
            where.append(text("q3c_radial_query(ra, dec, :s_ra, :s_dec, :s_r)")
                         .bindparams(bindparam("s_ra", cone[0]), bindparam("s_dec", cone[1]),
                                     bindparam("s_r", cone[2])))
        else:
            ranges = sphere.cap_ranges(*cone, sphere.ROW_DEPTH)
            where.append(or_(*[src.c.healpix29.between(int(a), int(b)) for a, b in ranges]))
        with self._reader() as conn:
            rows = [dict(r) for r in conn.execute(select(*cols).where(*where)).mappings()]
        if rows:
            d = sphere.separation(np.array([r["ra"] for r in rows]), np.array([r["dec"] for r in rows]),
                                  cone[0], cone[1])
            keep = d <= cone[2]
            rows = [dict(r, distance=float(x)) for r, x, k in zip(rows, d, keep) if k]
        rows.sort(key=lambda r: (r["distance"], r["catalog_obs_id"], r["row_index"]))
        if maxrec is not None:
            rows = rows[:max(0, int(maxrec))]
        flux_names = []
        for r in rows:
            fl = json.loads(r.pop("fluxes") or "{}")
            for n in fl:
                if n not in flux_names:
                    flux_names.append(n)
            r.update(fl)
        columns = (("catalog_obs_id", "str", "", "catalog product"), ("row_index", "int", "", "row in the catalog"),
                   ("ra", "float", "deg", "ICRS right ascension"), ("dec", "float", "deg", "ICRS declination"),
                   ("distance", "float", "deg", "distance from the cone centre"),
                   *((n, "float", "", "flux") for n in flux_names))
        return rows_to_table(rows, columns)


LINEAGE_COLUMNS = (
    ("obs_id", "str", "", "product"), ("depth", "int", "", "steps from the queried product"),
    ("parent", "str", "", "product it was reached from"), ("role", "str", "", "science, reference or member"),
    ("detail", "str", "", "reference type"), ("product_kind", "str", "", ""), ("product_level", "str", "", ""),
    ("in_archive", "bool", "", "whether the product is registered"),
)


# ------------------------------------------------------------------------------------------ helpers
def expand_paths(paths) -> list[Path]:
    """Files to ingest: files as given, and product files (:data:`PRODUCT_PATTERNS`) under folders."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            found = set()
            for pattern in PRODUCT_PATTERNS:
                for f in p.rglob(pattern):
                    if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts) \
                            and "truth" not in f.relative_to(p).parts:
                        found.add(f.resolve())
            out.extend(sorted(found))
        else:
            out.append(p.resolve() if p.exists() else p)
    return list(dict.fromkeys(out))


def _plain_value(v):
    """A value the database drivers take (numpy scalars as Python numbers)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def _coalesce(a, b):
    from sqlalchemy import func

    return func.coalesce(a, b)


def _footprint_batch(vertex_list) -> tuple[list, list]:
    """Vertex texts and bounding caps ((centre, radius deg) or None) of many footprints, vectorised by vertex count."""
    texts, caps = [None] * len(vertex_list), [None] * len(vertex_list)
    groups: dict[int, list] = {}
    for k, v in enumerate(vertex_list):
        if v is not None:
            groups.setdefault(len(v), []).append(k)
    for idx in groups.values():
        arr = np.stack([vertex_list[k] for k in idx])  # (m, n, 3)
        centres = arr.sum(axis=1)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        radii = np.degrees(np.arccos(np.clip(np.einsum("mnk,mk->mn", arr, centres), -1, 1))).max(axis=1)
        ra, dec = sphere.radec(arr)
        for j, k in enumerate(idx):
            texts[k] = " ".join(f"{a:.10f} {d:.10f}" for a, d in zip(ra[j].tolist(), dec[j].tolist()))
            caps[k] = (centres[j], float(radii[j]))
    return texts, caps


def _vertices_text(v) -> str | None:
    if v is None:
        return None
    ra, dec = sphere.radec(v)
    return " ".join(f"{a:.10f} {d:.10f}" for a, d in zip(ra, dec))


def _vertices_from_text(text: str) -> np.ndarray:
    values = np.array(text.split(), float)
    return sphere.xyz(values[0::2], values[1::2])


def _spoly_text(v) -> str | None:
    if v is None:
        return None
    ra, dec = sphere.radec(v)
    return "{" + ",".join(f"({a:.10f}d,{d:.10f}d)" for a, d in zip(ra, dec)) + "}"


#: Footprints wider than this (deg) skip :func:`_near_centre`'s test and go to the exact one.
_WIDE_FOOTPRINT_DEG = 2.0


def _near_centre(o, ra: float, dec: float, radius: float):
    """A necessary condition, in SQL on the ObsCore centre columns, for a footprint to meet a cap.

    A footprint lies in the cap of diameter ``s_fov`` around (``s_ra``, ``s_dec``), so it can meet the query
    cap only if the two centres are at most s = ``radius + s_fov/2`` apart: then |Δdec| <= s, and (from the
    haversine formula) sin(|Δra|/2) <= sin(s/2)/cos(d), d the larger |dec| of the two. That bound on |Δra|
    is convex in s, so for every s up to ``radius + 1°`` it lies under the chord s·f(s_max)/s_max, a linear
    test SQL can make (across RA 0/360). Footprints wider than 2° skip the test. The HEALPix cells of a 10'
    cone hand about five candidates to the exact test for every match; this keeps about one and a half.
    """
    from sqlalchemy import and_, literal, or_

    reach = literal(float(radius) + 1e-6) + o.c.s_fov / 2.0
    near = [(o.c.s_dec - dec).between(-reach, reach)]
    stretch = ra_stretch(dec, float(radius) + 1e-6 + _WIDE_FOOTPRINT_DEG / 2.0)
    if stretch is not None:
        spread = reach * stretch
        near.append(or_(*[(o.c.s_ra - (ra + shift)).between(-spread, spread) for shift in (0.0, 360.0, -360.0)]))
    return or_(o.c.s_fov > _WIDE_FOOTPRINT_DEG, and_(*near))


def ra_stretch(dec: float, s_max: float) -> float | None:
    """k such that two points at most s <= ``s_max`` (deg) apart, one at declination ``dec``, differ in RA by
    at most k·s (deg, wrapped); None where no such bound helps (near a pole, or s_max too large)."""
    extreme = abs(float(dec)) + s_max
    if extreme >= 89.0:
        return None
    ratio = math.sin(math.radians(s_max) / 2.0) / math.cos(math.radians(extreme))
    if ratio >= 1.0:
        return None
    return math.degrees(2.0 * math.asin(ratio)) / s_max * (1.0 + 1e-9)


def _exact_overlaps(texts, tests) -> np.ndarray:
    """Whether each stored footprint (vertex text or None) passes every exact test; none without a footprint.

    The texts of footprints with the same number of vertices are parsed in one call and tested as one
    array: per-row parsing was most of a 10' cone's time at 1e6 products."""
    by_count: dict[int, list] = {}
    for i, text in enumerate(texts):
        if text:
            by_count.setdefault(text.count(" ") + 1, []).append(i)
    keep = np.zeros(len(texts), bool)
    for idx in by_count.values():
        values = np.array(" ".join(texts[i] for i in idx).split(), float).reshape(len(idx), -1, 2)
        polys = sphere.xyz(values[..., 0], values[..., 1])
        ok = np.ones(len(idx), bool)
        for test in tests:
            ok &= test(polys)
        keep[idx] = ok
    return keep


def _stcs_from_vertices_text(text: str | None) -> str | None:
    """STC-S polygon of a stored vertex text (``ra dec ra dec ...``, deg, ra in [0, 360))."""
    if not text:
        return None
    return "POLYGON ICRS " + " ".join(f"{float(v):.9f}" for v in text.split())


def _as_list(value):
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return list(value)
    return [value]


def _band_names():
    from romanflow.detector import OPTICAL_ELEMENTS

    return OPTICAL_ELEMENTS


def _check_values(name, value, allowed, upper=True):
    out = []
    for v in _as_list(value):
        s = str(v).strip()
        s = s.upper() if upper else s.lower()
        if s not in allowed:
            raise ArchiveError(f"{name}={v!r}: expected one of {', '.join(allowed)}")
        out.append(s)
    if not out:
        raise ArchiveError(f"{name}: empty list")
    return out


def _finite(name, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ArchiveError(f"{name}={value!r}: expected a number") from None
    if not np.isfinite(x):
        raise ArchiveError(f"{name}={value!r}: expected a finite number")
    return x


def _check_cone(ra, dec, radius):
    given = [v is not None for v in (ra, dec, radius)]
    if not any(given):
        return None
    if not all(given):
        raise ArchiveError("a cone needs ra, dec and radius together")
    ra, dec, radius = _finite("ra", ra), _finite("dec", dec), _finite("radius", radius)
    if not -90.0 <= dec <= 90.0:
        raise ArchiveError(f"dec={dec!r}: expected -90 to 90 deg")
    if not 0.0 < radius <= sphere.MAX_QUERY_RADIUS_DEG:
        raise ArchiveError(f"radius={radius!r}: expected > 0 and <= {sphere.MAX_QUERY_RADIUS_DEG:g} deg")
    return ra % 360.0, dec, radius


def _check_polygon(polygon) -> np.ndarray:
    try:
        if isinstance(polygon, str):
            text = polygon.strip()
            if text[:7].upper() == "POLYGON":
                ra, dec = sphere.parse_stcs(text)
            else:
                values = np.array([float(x) for x in text.replace(",", " ").split()])
                if len(values) % 2:
                    raise ValueError("an odd number of values")
                ra, dec = values[0::2], values[1::2]
        else:
            arr = np.asarray(polygon, float)
            if arr.ndim == 1:
                ra, dec = arr[0::2], arr[1::2]
            else:
                ra, dec = arr[:, 0], arr[:, 1]
        return sphere.check_polygon(ra, dec)
    except (ValueError, TypeError, IndexError) as exc:
        raise ArchiveError(f"polygon={str(polygon)[:80]!r}: {exc}") from None


def _check_time_range(time_range) -> tuple[float, float]:
    from astropy.time import Time

    try:
        t0, t1 = time_range
    except (TypeError, ValueError):
        raise ArchiveError(f"time_range={time_range!r}: expected (start, end)") from None
    out = []
    for t in (t0, t1):
        if isinstance(t, Time):
            out.append(float(t.utc.mjd))
            continue
        try:
            out.append(_finite("time_range", t))
            continue
        except ArchiveError:
            pass
        try:
            out.append(float(Time(str(t).strip().removesuffix("Z"), scale="utc").mjd))
        except ValueError:
            raise ArchiveError(f"time_range: {t!r} is neither an MJD nor an ISO date") from None
    if out[0] > out[1]:
        raise ArchiveError(f"time_range={time_range!r}: start after end")
    return out[0], out[1]


def _check_obs_id(obs_id) -> str:
    s = str(obs_id)
    if not s or len(s) > 255 or any(ch in s for ch in "\0\n\r"):
        raise ArchiveError(f"obs_id={s[:60]!r}: not a product identifier")
    return s


__all__ = ["Archive", "ArchiveError", "IngestReport", "default_url", "expand_paths", "obs_id_of"]
