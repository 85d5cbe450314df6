"""The ASGI application: IVOA services (SIA v2, DataLink, SODA, Simple Cone Search, TAP), HATS over HTTP,
a JSON API and the files of the archive, each reached through its archive identifier.

Errors: the VO endpoints answer a VOTable with ``QUERY_STATUS=ERROR`` (HTTP 400, 404 or 413), the
others JSON ``{"error": ...}`` with a 4xx status. Anonymous users only read; the one endpoint that
writes (``POST /api/ingest``) needs the bearer token given at start-up, and is off without one.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import Request

from romanflow.errors import RomanflowError
from romanflow.services import cutout as cutouts
from romanflow.services import vosi
from romanflow.services.params import NotFound, RequestError, parse_interval, read_body, read_params
from romanflow.services.obscore import obscore_metadata
from romanflow.services.votable import (DATALINK_MIME, VOTABLE_MIME, AdhocService, ColumnMeta, error_votable,
                                        table_votable)

logger = logging.getLogger("romanflow.services")
access_logger = logging.getLogger("romanflow.services.access")

#: Path prefixes whose errors are VOTables.
VO_PREFIXES = ("/sia", "/scs", "/soda", "/datalink", "/tap")
PUBLISHER = "ivo://romanflow/"

SIA_STD = "ivo://ivoa.net/std/SIA#query-2.0"
SODA_STD = "ivo://ivoa.net/std/SODA#sync-1.0"
SODA_STD_PYVO = "ivo://ivoa.net/std/SODA#sync-1"
DATALINK_STD = "ivo://ivoa.net/std/DataLink#links-1.1"
SCS_STD = "ivo://ivoa.net/std/ConeSearch"


@dataclass
class ServiceLimits:
    """Bounds on what one request may ask for."""

    max_rows: int = 100_000          #: hard limit on rows of any result (MAXREC is capped to it)
    default_rows: int = 10_000       #: rows when MAXREC is not given
    max_cutout_pixels: int = 4096 * 4096
    max_cone_radius_deg: float = 10.0
    query_timeout_s: float = 30.0    #: TAP queries are stopped after this
    max_body_bytes: int = 1 << 20    #: request bodies (TAP queries, forms)
    max_query_chars: int = 20_000    #: ADQL text


@dataclass
class ServiceConfig:
    """How the app serves: limits, the write token, CORS origins, base URL, HATS catalogs."""

    limits: ServiceLimits = field(default_factory=ServiceLimits)
    token: str | None = None
    cors_origins: tuple = ("*",)
    base_url: str | None = None
    hats: dict = field(default_factory=dict)  #: name -> folder of a HATS catalog
    access_log: str | None = None  #: file to append the access log to (else the logger)


def _obs_id_from(value: str) -> str:
    v = str(value).strip()
    if v.startswith(PUBLISHER):
        v = v[len(PUBLISHER):]
    if not v or len(v) > 300 or any(c in v for c in "/\\\x00") or v in (".", ".."):
        raise NotFound(f"ID={value!r}: no such product")
    return v


class ArchiveAccess:
    """Thread-safe access to the archive for the request handlers."""

    def __init__(self, archive):
        self.archive = archive
        self._lock = threading.RLock() if getattr(archive, "backend", "sqlite") == "sqlite" else None
        self.root = Path(archive.root).resolve()

    def call(self, name, *args, **kwargs):
        fn = getattr(self.archive, name)
        if self._lock is None:
            return fn(*args, **kwargs)
        with self._lock:
            return fn(*args, **kwargs)

    def product(self, obs_id: str) -> dict:
        """The product's row, or NotFound; its path checked to lie inside the archive root."""
        from romanflow.archive import ArchiveError

        oid = _obs_id_from(obs_id)
        try:
            row = self.call("product", oid)
        except ArchiveError:
            raise NotFound(f"ID={obs_id!r}: no such product") from None
        path = Path(row["path"])
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFound(f"ID={obs_id!r}: the product's file is missing") from None
        if not real.is_relative_to(self.root) or not real.is_file():
            raise RequestError(f"ID={obs_id!r}: the product's file lies outside the archive", 403)
        row = dict(row)
        row["path"] = real
        return row


def _column_values(table, name):
    col = table[name]
    return np.ma.asarray(col).filled(None) if hasattr(col, "mask") else np.asarray(col)


def absolute_access_urls(table, base: str):
    """Prefix the relative ``access_url`` values with the server's base URL."""
    if "access_url" in table.colnames and len(table):
        urls = [("" if u is None else (u if "://" in str(u) else f"{base}/{str(u).lstrip('/')}"))
                for u in _column_values(table, "access_url")]
        table.replace_column("access_url", np.array(urls, dtype=object))
    return table


# --------------------------------------------------------------------------------- SIA v2
def _sia_filter(table, params):
    """Rows of ``table`` matching the SIA constraints the archive search did not apply."""
    keep = np.ones(len(table), bool)

    def col(name):
        return _column_values(table, name)

    def interval_filter(pname, lo_col, hi_col):
        nonlocal keep
        values = params.all(pname)
        if not values:
            return
        hit = np.zeros(len(table), bool)
        lo_v = np.array([np.nan if v is None else float(v) for v in col(lo_col)], float)
        hi_v = np.array([np.nan if v is None else float(v) for v in col(hi_col)], float)
        for text in values:
            lo, hi = parse_interval(text, pname)
            with np.errstate(invalid="ignore"):
                hit |= (lo_v <= hi) & (hi_v >= lo)
        keep &= hit

    interval_filter("BAND", "em_min", "em_max")
    interval_filter("TIME", "t_min", "t_max")
    interval_filter("EXPTIME", "t_exptime", "t_exptime")
    interval_filter("FOV", "s_fov", "s_fov")
    interval_filter("SPATRES", "s_resolution", "s_resolution")
    for pname, cname in (("COLLECTION", "obs_collection"), ("FACILITY", "facility_name"),
                         ("INSTRUMENT", "instrument_name"), ("DPTYPE", "dataproduct_type"),
                         ("TARGET", "target_name"), ("ID", "obs_publisher_did"), ("FORMAT", "access_format")):
        values = params.all(pname)
        if values:
            wanted = {v.strip() for v in values}
            keep &= np.array([str(v) in wanted for v in col(cname)], bool)
    calib = params.all("CALIB")
    if calib:
        try:
            levels = {int(v) for v in calib}
        except ValueError:
            raise RequestError(f"CALIB={calib!r}: expected integers 0-4") from None
        keep &= np.array([v is not None and int(v) in levels for v in col("calib_level")], bool)
    return table[keep]


SIA_PARAMS = ("POS", "BAND", "TIME", "POL", "FOV", "SPATRES", "EXPTIME", "ID", "COLLECTION", "FACILITY",
              "INSTRUMENT", "DPTYPE", "CALIB", "TARGET", "TIMERES", "SPECRP", "FORMAT", "MAXREC",
              "RESPONSEFORMAT", "UPLOAD", "RUNID")


def sia_search(access: ArchiveAccess, params, limits: ServiceLimits):
    """(table, overflow) for an SIA v2 query."""
    from astropy.table import Table, vstack

    from romanflow.archive.schema import RESULT_COLUMNS

    unknown_fmt = params.get("RESPONSEFORMAT")
    if unknown_fmt and unknown_fmt.split(";")[0].strip().lower() not in (
            "votable", "application/x-votable+xml", "text/xml", "application/xml"):
        raise RequestError(f"RESPONSEFORMAT={unknown_fmt!r}: only VOTable is served")
    if params.all("POL"):
        raise RequestError("POL: WFI images carry no polarisation states; remove POL")
    maxrec = params.integer("MAXREC", limits.default_rows, maximum=limits.max_rows)
    positions = params.all("POS")
    regions = [cutouts.parse_pos(p) for p in positions]
    post = any(params.all(p) for p in ("BAND", "TIME", "EXPTIME", "FOV", "SPATRES", "COLLECTION", "FACILITY",
                                        "INSTRUMENT", "DPTYPE", "TARGET", "ID", "FORMAT", "CALIB"))
    # the archive applies position; the other constraints are applied to its rows (scan bounded)
    fetch = None if post else maxrec + 1
    if fetch is not None and maxrec == 0:
        fetch = 1
    tables = []
    for region in regions or [None]:
        kwargs = {}
        if region is not None and region.kind == "circle":
            ra, dec, r = region.values
            if r > limits.max_cone_radius_deg:
                raise RequestError(f"POS: the radius may not exceed {limits.max_cone_radius_deg} degrees")
            kwargs.update(ra=ra, dec=dec, radius=r)
        elif region is not None:
            ra, dec = region.boundary(8) if region.kind == "range" else (
                np.array(region.values[0::2]), np.array(region.values[1::2]))
            if region.kind == "range":
                ra1, ra2, d1, d2 = region.values
                ra, dec = np.array([ra1, ra2, ra2, ra1]), np.array([d1, d1, d2, d2])
            kwargs.update(polygon=list(zip(ra.tolist(), dec.tolist())))
        try:
            tables.append(access.call("search", maxrec=fetch, **kwargs))
        except RomanflowError as exc:
            raise RequestError(f"POS: {exc}") from None
    table = tables[0] if len(tables) == 1 else vstack(tables)
    if len(tables) > 1 and len(table):
        _, first = np.unique(np.asarray(table["obs_id"], dtype=str), return_index=True)
        table = table[np.sort(first)]
    if post:
        table = _sia_filter(table, params)
    if not len(table) and not table.colnames:
        table = Table({name: np.array([], dtype=object if kind == "str" else (np.int64 if kind == "int" else float))
                       for name, kind, _, _ in RESULT_COLUMNS})
    overflow = len(table) > maxrec
    return table[:maxrec], overflow


# --------------------------------------------------------------------------------- app factory
def create_app(archive, config: ServiceConfig | None = None):
    """The FastAPI application serving ``archive`` (a :class:`romanflow.archive.Archive`)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.middleware.cors import CORSMiddleware

    from romanflow.version import __version__

    config = config or ServiceConfig()
    limits = config.limits
    access = ArchiveAccess(archive)
    app = FastAPI(title="romanflow archive services", version=__version__,
                  description="IVOA services (SIA v2, DataLink, SODA, cone search, TAP) and a JSON API over "
                              "a romanflow archive.", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.state.archive = archive
    app.state.access = access
    app.state.config = config
    meta = obscore_metadata()
    preview_cache: dict = {}
    preview_lock = threading.Lock()

    def base_url(request: Request) -> str:
        if config.base_url:
            return config.base_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def is_vo(path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in VO_PREFIXES)

    def error_response(request: Request, status: int, message: str):
        if is_vo(request.url.path):
            return Response(error_votable(message), status_code=status, media_type=VOTABLE_MIME)
        return JSONResponse({"error": message, "status": status}, status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return error_response(request, exc.status, str(exc))

    @app.exception_handler(RomanflowError)
    async def _romanflow_error(request: Request, exc: RomanflowError):
        from romanflow.archive import ArchiveError

        status = 404 if isinstance(exc, ArchiveError) and "unknown" in str(exc).lower() else 400
        return error_response(request, status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        response = error_response(request, exc.status_code, str(exc.detail))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = ["; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())]
        return error_response(request, 422, parts[0] or "invalid request")

    # ------------------------------------------------------------------ middleware
    app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST", "HEAD",
                       "OPTIONS"], allow_headers=["*"], expose_headers=["Content-Length", "Content-Range",
                       "Accept-Ranges"], max_age=3600)
    app.add_middleware(AccessLogMiddleware, path=config.access_log)

    def vot(body: bytes, status: int = 200, media_type: str = VOTABLE_MIME):
        return Response(body, status_code=status, media_type=media_type)

    def xml(body: bytes):
        return Response(body, media_type=vosi.XML_MIME)

    # ------------------------------------------------------------------ root and files
    @app.get("/api/health", tags=["api"])
    def health():
        """The server is up; the archive's backend."""
        return {"status": "ok", "backend": getattr(archive, "backend", "unknown"), "version": __version__}

    @app.get("/files/{obs_id}", tags=["files"])
    def get_file(obs_id: str, request: Request):
        """The current file of a product (by its archive identifier); HTTP range requests accepted."""
        from starlette.responses import FileResponse

        row = access.product(obs_id)
        path = row["path"]
        return FileResponse(path, media_type=row.get("access_format") or "application/octet-stream",
                            filename=path.name)

    @app.get("/preview/{name}", tags=["files"])
    def get_preview(name: str):
        """A PNG preview (``OBS_ID.png``) of an L2 or L3 image."""
        if not name.endswith(".png"):
            raise NotFound(f"{name!r}: previews are named OBS_ID.png")
        row = access.product(name[:-4])
        _require_image(row)
        key = (str(row["path"]), row["path"].stat().st_mtime_ns)
        with preview_lock:
            body = preview_cache.get(key)
        if body is None:
            prod = cutouts.open_product(row["path"], row["obs_id"], _level(row))
            body = cutouts.to_png(prod.arrays["data"], max_side=1024)
            with preview_lock:
                if len(preview_cache) > 64:
                    preview_cache.clear()
                preview_cache[key] = body
        return Response(body, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    # ------------------------------------------------------------------ JSON API
    @app.get("/api/products", tags=["api"])
    def api_products(ra: float | None = None, dec: float | None = None, radius: float | None = None,
                     band: str | None = None, level: str | None = None, detector: str | None = None,
                     kind: str | None = None, maxrec: int = 1000, request: Request = None):
        """Products matching the constraints, as JSON rows (ObsCore + Roman columns)."""
        if maxrec < 0:
            raise RequestError("maxrec must be >= 0")
        if (ra is None) != (dec is None) or (radius is not None and ra is None):
            raise RequestError("give ra, dec and radius together")
        for name, v in (("ra", ra), ("dec", dec), ("radius", radius)):
            if v is not None and not np.isfinite(v):
                raise RequestError(f"{name} must be finite")
        if radius is not None and not 0 < radius <= limits.max_cone_radius_deg:
            raise RequestError(f"radius must lie in (0, {limits.max_cone_radius_deg}] degrees")
        if ra is not None and radius is None:
            radius = 1.0 / 3600.0
        if dec is not None and not -90 <= dec <= 90:
            raise RequestError("dec must lie in [-90, 90]")
        maxrec = min(maxrec, limits.max_rows)
        table = access.call("search", ra=ra, dec=dec, radius=radius, band=band, level=level, detector=detector,
                            kind=kind, maxrec=maxrec)
        absolute_access_urls(table, base_url(request))
        return {"rows": _json_rows(table), "count": len(table)}

    @app.get("/api/products/{obs_id}", tags=["api"])
    def api_product(obs_id: str, request: Request):
        """One product's row."""
        row = access.product(obs_id)
        out = {k: _json_value(v) for k, v in row.items() if k != "path"}
        out["access_url"] = f"{base_url(request)}/files/{row['obs_id']}"
        return out

    @app.get("/api/lineage/{obs_id}", tags=["api"])
    def api_lineage(obs_id: str, direction: str = "up"):
        """The product's inputs (``up``) or the products made from it (``down``)."""
        if direction not in ("up", "down"):
            raise RequestError("direction must be 'up' or 'down'")
        row = access.product(obs_id)
        table = access.call("lineage", row["obs_id"], direction=direction)
        return {"rows": _json_rows(table), "count": len(table)}

    @app.post("/api/ingest", tags=["api"])
    async def api_ingest(request: Request):
        """Ingest files already inside the archive root (JSON body ``{"paths": [...]}``, relative to the root).

        Needs ``Authorization: Bearer TOKEN``; refused when the server runs without a token.
        """
        import json as _json

        if not config.token:
            raise RequestError("this server is read-only (start it with a token to allow ingest)", 403)
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            raise RequestError("a valid bearer token is required", 401)
        body = await read_body(request, limits.max_body_bytes)
        try:
            paths = _json.loads(body.decode() or "{}").get("paths")
        except (ValueError, AttributeError, UnicodeDecodeError):
            raise RequestError('the body must be JSON {"paths": [...]}') from None
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise RequestError('"paths" must be a non-empty list of paths relative to the archive root')
        resolved = []
        for p in paths:
            candidate = (access.root / p).resolve()
            if Path(p).is_absolute() or not candidate.is_relative_to(access.root) or not candidate.exists():
                raise RequestError(f"{p!r}: not a file inside the archive root", 400)
            resolved.append(candidate)
        import anyio

        report = await anyio.to_thread.run_sync(lambda: access.call("ingest", resolved))
        summary = {k: _json_value(v) for k, v in vars(report).items()} if hasattr(report, "__dict__") else str(report)
        return {"ingested": summary}

    # ------------------------------------------------------------------ SIA v2
    @app.api_route("/sia/query", methods=["GET", "POST"], include_in_schema=False)
    async def sia_query(request: Request):
        """SIA v2 query over the ObsCore table."""
        import anyio

        params = await read_params(request, limits.max_body_bytes)
        table, overflow = await anyio.to_thread.run_sync(lambda: sia_search(access, params, limits))
        base = base_url(request)
        absolute_access_urls(table, base)
        body = table_votable(table, metadata=meta, status="OVERFLOW" if overflow else "OK",
                             services=[_datalink_service(base)])
        return vot(body)

    @app.get("/sia/capabilities", tags=["vo"])
    def sia_capabilities(request: Request):
        base = base_url(request)
        return xml(vosi.capabilities(vosi.capability(SIA_STD, f"{base}/sia/query"),
                                     vosi.vosi_capabilities(f"{base}/sia")))

    # ------------------------------------------------------------------ DataLink
    @app.api_route("/datalink", methods=["GET", "POST"], include_in_schema=False)
    async def datalink(request: Request):
        """DataLink links of one or more products (``ID``): the file, preview, cutout service, lineage."""
        import anyio

        params = await read_params(request, limits.max_body_bytes)
        ids = params.all("ID")
        if not ids:
            raise RequestError("ID is required")
        if len(ids) > 100:
            raise RequestError("at most 100 IDs per request")
        base = base_url(request)
        rows = await anyio.to_thread.run_sync(lambda: [r for i in ids for r in _links(access, i, base)])
        from astropy.table import Table

        cols = ("ID", "access_url", "service_def", "error_message", "semantics", "description", "content_type",
                "content_length", "local_semantics")
        table = Table({c: np.array([r.get(c) for r in rows], dtype=object)
                       for c in cols}) if rows else Table({c: np.array([], dtype=object) for c in cols})
        if "content_length" in table.colnames:
            cl = np.ma.MaskedArray(np.array([max(int(r.get("content_length") or 0), 0) for r in rows], np.int64),
                                   mask=[not r.get("content_length") for r in rows])
            table.replace_column("content_length", cl)
        dl_meta = {
            "ID": ColumnMeta(ucd="meta.id;meta.main", description="the product's publisher identifier"),
            "access_url": ColumnMeta(ucd="meta.ref.url", description="URL of the linked resource"),
            "service_def": ColumnMeta(ucd="meta.ref", description="service descriptor of the link"),
            "error_message": ColumnMeta(ucd="meta.code.error", description="why the link is missing"),
            "semantics": ColumnMeta(ucd="meta.code", description="what the link is, from the DataLink vocabulary"),
            "description": ColumnMeta(ucd="meta.note", description="the link in words"),
            "content_type": ColumnMeta(ucd="meta.code.mime", description="MIME type of the resource"),
            "content_length": ColumnMeta(ucd="phys.size;meta.file", unit="byte", description="size of the resource"),
            "local_semantics": ColumnMeta(ucd="meta.code", description="the link's local role"),
        }
        svc = AdhocService("soda", SODA_STD, f"{base}/soda/sync",
                           [("ID", "ID", None), ("CIRCLE", None, None, "double", "3", "circle", "deg"),
                            ("POLYGON", None, None, "double", "*", "polygon", "deg"), ("POS", None, None),
                            ("RESPONSEFORMAT", None, None)])
        return vot(table_votable(table, metadata=dl_meta, services=[svc]), media_type=DATALINK_MIME)

    @app.get("/datalink/capabilities", tags=["vo"])
    def datalink_capabilities(request: Request):
        base = base_url(request)
        return xml(vosi.capabilities(vosi.capability(DATALINK_STD, f"{base}/datalink"),
                                     vosi.vosi_capabilities(f"{base}/datalink")))

    # ------------------------------------------------------------------ SODA
    @app.api_route("/soda/sync", methods=["GET", "POST"], include_in_schema=False)
    async def soda_sync(request: Request):
        """SODA synchronous cutout: ``ID`` and one of ``CIRCLE``, ``POLYGON``, ``POS``; ``RESPONSEFORMAT``."""
        import anyio

        params = await read_params(request, limits.max_body_bytes)
        body, mime, name = await anyio.to_thread.run_sync(lambda: soda_cutout(access, params, limits))
        return Response(body, media_type=mime, headers={"Content-Disposition": f'inline; filename="{name}"'})

    @app.get("/soda/capabilities", tags=["vo"])
    def soda_capabilities(request: Request):
        base = base_url(request)
        return xml(vosi.capabilities(vosi.capability(SODA_STD, f"{base}/soda/sync"),
                                     vosi.vosi_capabilities(f"{base}/soda")))

    # ------------------------------------------------------------------ cone search
    @app.get("/scs/{catalog}", tags=["vo"])
    def scs_query(catalog: str, request: Request):
        """Simple Cone Search 1.03 on one catalog product (its archive identifier)."""
        from romanflow.services.params import VOParams

        params = VOParams(request.query_params.multi_items())
        table, overflow = cone_search(access, catalog, params, limits)
        body = table_votable(table, metadata=scs_metadata(table), status="OVERFLOW" if overflow else "OK")
        return vot(body)

    @app.get("/scs/{catalog}/capabilities", tags=["vo"])
    def scs_capabilities(catalog: str, request: Request):
        base = base_url(request)
        return xml(vosi.capabilities(vosi.capability(SCS_STD, f"{base}/scs/{catalog}"),
                                     vosi.vosi_capabilities(f"{base}/scs/{catalog}")))

    # ------------------------------------------------------------------ VOSI availability (all services)
    for prefix in ("/sia", "/datalink", "/soda", "/scs/{catalog}"):
        app.add_api_route(f"{prefix}/availability", lambda: xml(vosi.availability()), methods=["GET"],
                          include_in_schema=False)

    # ------------------------------------------------------------------ TAP, HATS, viewer
    from romanflow.services.tap import mount_tap

    mount_tap(app, archive, config)
    from romanflow.services.hats import mount_hats

    mount_hats(app, archive, config)
    _mount_root(app, archive)
    return app


def _mount_root(app, archive):
    """The viewer at ``/`` when it is installed, else a small page linking the services."""
    try:
        from romanflow.services.viewer import mount_viewer
    except ImportError:
        mount_viewer = None
    if mount_viewer is not None:
        try:
            mount_viewer(app, archive)
            return
        except Exception as exc:  # noqa: BLE001 - the services work without the viewer
            logger.warning("viewer not mounted: %s", exc)
    from fastapi.responses import HTMLResponse

    @app.get("/", include_in_schema=False)
    def index():
        links = ["sia/query", "sia/capabilities", "tap", "datalink", "soda/sync", "api/docs"]
        items = "".join(f'<li><a href="{u}">{u}</a></li>' for u in links)
        return HTMLResponse(f"<!doctype html><title>romanflow archive</title><h1>romanflow archive</h1>"
                            f"<ul>{items}</ul>")


# --------------------------------------------------------------------------------- helpers
def _datalink_service(base: str) -> AdhocService:
    return AdhocService("datalink", DATALINK_STD, f"{base}/datalink", [("ID", "obs_publisher_did", None)])


def _level(row) -> int | None:
    lvl = row.get("calib_level")
    try:
        return int(lvl)
    except (TypeError, ValueError):
        return None


def _require_image(row):
    if row.get("dataproduct_type") != "image" or _level(row) not in (2, 3):
        raise RequestError(f"ID={row.get('obs_id')!r}: cutouts and previews exist for L2 and L3 images only")


def _links(access: ArchiveAccess, ident: str, base: str) -> list[dict]:
    """DataLink rows of one ID."""
    try:
        row = access.product(ident)
    except RequestError as exc:
        return [{"ID": ident, "error_message": f"NotFoundFault: {exc}", "semantics": "#this"}]
    did = PUBLISHER + row["obs_id"]
    oid = row["obs_id"]
    out = [{"ID": ident, "access_url": f"{base}/files/{oid}", "semantics": "#this",
            "description": f"the product file ({row.get('dataproduct_subtype') or row.get('product_kind')})",
            "content_type": row.get("access_format") or "application/octet-stream",
            "content_length": cutouts.file_size(row["path"])}]
    if row.get("dataproduct_type") == "image" and _level(row) in (2, 3):
        out.append({"ID": ident, "access_url": f"{base}/preview/{oid}.png", "semantics": "#preview",
                    "description": "PNG preview of the image", "content_type": "image/png"})
        out.append({"ID": ident, "service_def": "soda", "semantics": "#cutout",
                    "description": "cutout service (SODA): data, err and dq, or weight and context for L3",
                    "content_type": "application/asdf"})
    for direction, semantics in (("up", "#progenitor"), ("down", "#derivation")):
        try:
            lineage = access.call("lineage", oid, direction=direction)
        except RomanflowError:
            continue
        col = "input_obs_id" if direction == "up" else "output_obs_id"
        if col not in lineage.colnames:
            col = "obs_id" if "obs_id" in lineage.colnames else None
        if col is None:
            continue
        roles = _column_values(lineage, "role") if "role" in lineage.colnames else [None] * len(lineage)
        depths = _column_values(lineage, "depth") if "depth" in lineage.colnames else [1] * len(lineage)
        seen = set()
        for other, role, depth in zip(_column_values(lineage, col), roles, depths):
            if other is None or other in seen or other == oid or (depth is not None and int(depth) != 1):
                continue
            seen.add(other)
            out.append({"ID": ident, "access_url": f"{base}/datalink?ID={PUBLISHER}{other}", "semantics": semantics,
                        "description": f"{'input' if direction == 'up' else 'product made from it'}: {other}"
                                       + (f" ({role})" if role else ""),
                        "content_type": DATALINK_MIME, "local_semantics": str(role) if role else None})
    del did
    return out


def soda_cutout(access: ArchiveAccess, params, limits: ServiceLimits):
    """(bytes, mime, file name) of a SODA cutout request."""
    ids = params.all("ID")
    if len(ids) != 1:
        raise RequestError("give exactly one ID" if not ids else "one ID per cutout request")
    shapes = [(k, v) for k in ("CIRCLE", "POLYGON", "POS") for v in params.all(k)]
    if len(shapes) != 1:
        raise RequestError("give exactly one of CIRCLE, POLYGON or POS")
    for unsupported in ("BAND", "TIME", "POL"):
        if params.all(unsupported):
            raise RequestError(f"{unsupported}: cutouts of WFI images take only spatial constraints")
    fmt = cutouts.response_format(params.get("RESPONSEFORMAT"))
    kind, text = shapes[0]
    region = {"CIRCLE": cutouts.parse_circle, "POLYGON": cutouts.parse_polygon, "POS": cutouts.parse_pos}[kind](text, kind)
    row = access.product(ids[0])
    _require_image(row)
    level = _level(row)
    product = cutouts.open_product(row["path"], row["obs_id"], level)
    box = cutouts.pixel_box(product, region)
    neighbours = []
    if level == 3:
        neighbours = _l3_neighbours(access, row, region, product, box)
    cut = cutouts.make_cutout(product, region, max_pixels=limits.max_cutout_pixels, neighbours=neighbours, box=box)
    suffix = {"asdf": "asdf", "fits": "fits", "png": "png"}[fmt]
    return cutouts.encode(cut, fmt), cutouts.FORMATS[fmt], f"{row['obs_id']}_cutout.{suffix}"


def _l3_neighbours(access, row, region, product, box):
    """Other L3 images of the same band meeting the region, when it leaves the product's grid."""
    ny, nx = product.shape
    x0, x1, y0, y1 = box
    if x0 >= 0 and y0 >= 0 and x1 < nx and y1 < ny:
        return []
    ra, dec = region.boundary(16)
    found = access.call("search", polygon=list(zip(ra.tolist(), dec.tolist())), maxrec=50)
    out = []
    for other in found:
        if other["obs_id"] == row["obs_id"] or str(other["calib_level"]) != "3":
            continue
        if other["dataproduct_type"] != "image" or other["optical_element"] != row.get("optical_element"):
            continue
        try:
            orow = access.product(other["obs_id"])
            out.append(cutouts.open_product(orow["path"], orow["obs_id"], 3))
        except RomanflowError:
            continue
    return out


SCS_PARAMS = ("RA", "DEC", "SR", "VERB", "MAXREC", "RESPONSEFORMAT")


def cone_search(access: ArchiveAccess, catalog: str, params, limits: ServiceLimits):
    """(table, overflow) of an SCS request on one catalog (its rows are in the database: no file needed)."""
    from romanflow.archive import ArchiveError

    try:
        row = access.call("product", _obs_id_from(catalog))
    except ArchiveError:
        raise NotFound(f"{catalog!r}: no such catalog") from None
    if row.get("product_kind") not in ("catalog", "source_table"):
        raise NotFound(f"{catalog!r} is not a catalog")
    ra = params.number("RA", required=True)
    dec = params.number("DEC", required=True)
    sr = params.number("SR", required=True)
    if not 0.0 <= ra <= 360.0 or not -90.0 <= dec <= 90.0:
        raise RequestError("RA must lie in [0, 360] and DEC in [-90, 90] degrees")
    if not 0.0 <= sr <= limits.max_cone_radius_deg:
        raise RequestError(f"SR must lie in [0, {limits.max_cone_radius_deg}] degrees")
    verb = params.integer("VERB", 2, minimum=1, maximum=3)
    maxrec = params.integer("MAXREC", limits.default_rows, maximum=limits.max_rows)
    if sr == 0.0:
        table = access.call("cone_sources", ra % 360.0, dec, 1e-9, catalog=row["obs_id"], maxrec=1)[:0]
    else:
        # the position index alone, then this catalog's rows: a catalog filter in the query makes SQLite
        # scan the whole catalog instead of the cone's index cells
        cap = 4 * (maxrec + 1)
        table = access.call("cone_sources", ra % 360.0, dec, sr, maxrec=cap)
        if len(table) >= cap:  # crowded by other catalogs: ask for this catalog's rows directly
            table = access.call("cone_sources", ra % 360.0, dec, sr, catalog=row["obs_id"], maxrec=maxrec + 1)
        elif len(table):
            table = table[np.asarray(table["catalog_obs_id"], dtype=str) == row["obs_id"]]
            for name in list(table.colnames):  # flux columns of other catalogs
                col = table[name]
                if hasattr(col, "mask") and len(table) and np.all(np.ma.getmaskarray(col)):
                    table.remove_column(name)
    overflow = len(table) > maxrec
    table = table[:maxrec]
    table = _scs_columns(table, verb)
    return table, overflow


def _scs_columns(table, verb: int):
    """The cone-search table: an ID column first, then ra and dec; VERB=1 keeps only those."""
    from astropy.table import Table

    cols = list(table.colnames)
    if "source_id" not in cols:
        if "catalog_obs_id" in cols and "row_index" in cols:
            ids = [f"{c}:{int(i)}" for c, i in zip(_column_values(table, "catalog_obs_id"),
                                                  _column_values(table, "row_index"))]
        else:
            ids = [str(i) for i in range(len(table))]
        table = table.copy(copy_data=False)
        table["source_id"] = np.array(ids, dtype=object) if ids else np.array([], dtype=object)
    first = ["source_id", "ra", "dec"]
    rest = [c for c in table.colnames if c not in first]
    if verb == 1:
        rest = []
    out = Table()
    for c in first + rest:
        out[c] = table[c]
    return out


def scs_metadata(table) -> dict:
    meta = {"source_id": ColumnMeta(ucd="meta.id;meta.main", description="source identifier (catalog:row)"),
            "ra": ColumnMeta(ucd="pos.eq.ra;meta.main", unit="deg", description="ICRS right ascension"),
            "dec": ColumnMeta(ucd="pos.eq.dec;meta.main", unit="deg", description="ICRS declination"),
            "catalog_obs_id": ColumnMeta(ucd="meta.id", description="catalog product"),
            "row_index": ColumnMeta(ucd="meta.number", description="row of the source in its catalog file"),
            "fluxes": ColumnMeta(ucd="phot.flux", description="fluxes per band (JSON, nJy)")}
    for name in ("distance", "separation"):
        meta[name] = ColumnMeta(ucd="pos.angDistance", unit="deg", description="distance from the cone centre")
    return meta


def _json_value(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    if isinstance(v, Path):
        return v.name
    if v is np.ma.masked:
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return str(v)


def _json_rows(table) -> list[dict]:
    names = table.colnames
    cols = [_column_values(table, n) for n in names]
    return [{n: _json_value(c[i]) for n, c in zip(names, cols)} for i in range(len(table))]


class AccessLogMiddleware:
    """ASGI middleware writing one line per request: client, method, path, status, bytes, milliseconds."""

    def __init__(self, app, path: str | None = None):
        self.app = app
        self._file = open(path, "a", buffering=1) if path else None  # noqa: SIM115 - lives with the app
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        state = {"status": 0, "bytes": 0, "logged": False}

        def log():
            if state["logged"]:
                return
            state["logged"] = True
            client = scope.get("client") or ("-", 0)
            query = scope.get("query_string", b"").decode("latin-1")
            line = (f'{client[0]} "{scope["method"]} {scope["path"]}{"?" + query if query else ""}" '
                    f'{state["status"]} {state["bytes"]} {1000 * (time.perf_counter() - start):.1f}ms')
            if self._file is not None:
                with self._lock:
                    self._file.write(line + "\n")
            else:
                access_logger.info(line)

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    log()  # before the last bytes go out: a client that has its answer finds the line
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log()
