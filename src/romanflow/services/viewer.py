"""The sky viewer at ``/`` of ``romanflow serve``, and the HiPS trees it shows.

:func:`mount_viewer` adds to a Starlette/FastAPI application:

* ``/`` — the viewer page (Aladin Lite v3, served from the package's own static files; nothing is
  fetched from elsewhere at run time);
* ``/viewer/static/...`` — the page's scripts, styles and the bundled Aladin Lite;
* ``/viewer/config.json`` — what the page needs to start: the HiPS trees found and the survey's centre;
* ``/viewer/sources``, ``/viewer/footprints``, ``/viewer/images``, ``/viewer/row``, ``/viewer/lightcurve``
  — JSON for the page: catalog rows in a cone (forced-photometry catalogs left out), L2/L3 outlines
  (STC-S), the mosaics covering a position (one per band, for SODA cutouts), one catalog row in full,
  and the forced-photometry light curve at a position; a bad parameter answers 400 with ``{"error"}``;
* ``/hips/{name}/...`` — every HiPS tree under ``<archive root>/hips/{name}/`` as static files
  (``properties``, ``Moc.fits``, ``NorderK/DirD/NpixN.{fits,png}``); a tile of an existing tree that was
  not built (no data there) answers as an empty tile, so that viewers asking for every tile of their
  view see no errors.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

_log = logging.getLogger(__name__)

#: Folder of the page's files inside the package.
STATIC_DIR = Path(__file__).parent / "static"

#: Folder, under the archive root, holding one HiPS tree per sub-folder.
HIPS_FOLDER = "hips"


def hips_root(archive) -> Path:
    """The folder whose sub-folders are the HiPS trees served at ``/hips/{name}/``."""
    return Path(archive.root) / HIPS_FOLDER


#: Media types of the files of a HiPS tree (``properties`` and ``index.html``-less folders are text).
HIPS_MEDIA_TYPES = {".fits": "application/fits", ".png": "image/png", ".jpg": "image/jpeg", ".json": "application/json"}


def hips_file_path(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names inside ``root``, or None when it is absent or would leave ``root``."""
    root = Path(root).resolve()
    try:
        path = (root / relative).resolve()
        path.relative_to(root)
    except (ValueError, OSError):
        return None
    return path if path.is_file() else None


_TILE_NAME = re.compile(r"^(?P<tree>[^/]+)/Norder(?P<order>[0-9]{1,2})/Dir(?P<dir>[0-9]+)/Npix(?P<npix>[0-9]+)"
                        r"\.(?P<ext>png|fits)$")


@functools.lru_cache(maxsize=8)
def _blank_bytes(ext: str, width: int) -> bytes:
    import io

    import numpy as np

    if ext == "png":
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("LA", (width, width), (0, 0)).save(buffer, format="PNG")
        return buffer.getvalue()
    from astropy.io import fits

    buffer = io.BytesIO()
    fits.PrimaryHDU(np.full((width, width), np.nan, np.float32)).writeto(buffer)
    return buffer.getvalue()


def blank_tile(root: Path, relative: str):
    """(bytes, media type) of an empty tile for a well-formed tile name of an existing tree whose tile
    was not built (no data there), else None. HiPS readers ask for every tile of the view; an absent
    tile means "no data", which this states explicitly instead of an HTTP error."""
    match = _TILE_NAME.match(relative)
    if match is None:
        return None
    order, npix, folder = int(match["order"]), int(match["npix"]), int(match["dir"])
    if order > 29 or npix >= 12 * 4**order or folder != (npix // 10000) * 10000:
        return None
    props_path = Path(root) / match["tree"] / "properties"
    if match["tree"].startswith(".") or not props_path.is_file():
        return None
    props = _read_properties(props_path)
    if match["ext"] not in props.get("hips_tile_format", "png").split():
        return None
    width = int(props.get("hips_tile_width", "512") or 512)
    return _blank_bytes(match["ext"], width), HIPS_MEDIA_TYPES["." + match["ext"]]


def _read_properties(path: Path) -> dict:
    """``key = value`` lines of a HiPS ``properties`` file."""
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def hips_trees(root: Path) -> list[dict]:
    """The HiPS trees under ``root``: name, title, band(s), formats, colour or not, and initial view."""
    trees = []
    if not root.is_dir():
        return trees
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        props_path = folder / "properties"
        if not props_path.is_file():
            continue
        props = _read_properties(props_path)
        trees.append({
            "name": folder.name,
            "url": f"hips/{folder.name}",
            "title": props.get("obs_title", folder.name),
            "band": props.get("romanflow_bands", props.get("obs_regime", "")),
            "formats": props.get("hips_tile_format", "png").split(),
            "colour": props.get("dataproduct_subtype") == "color" or "color" in props.get("hips_tile_format", ""),
            "ra": _float(props.get("hips_initial_ra")),
            "dec": _float(props.get("hips_initial_dec")),
            "fov": _float(props.get("hips_initial_fov")),
            "order": int(props.get("hips_order", "0") or 0),
        })
    return trees


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def viewer_config(archive) -> dict:
    """What the page needs to start (served as ``/viewer/config.json``)."""
    trees = hips_trees(hips_root(archive))
    centre = next(((t["ra"], t["dec"], t["fov"]) for t in trees if t["ra"] is not None), None)
    return {
        "hips": trees,
        "ra": centre[0] if centre else 0.0,
        "dec": centre[1] if centre else 0.0,
        "fov": centre[2] if centre and centre[2] else 0.5,
        "endpoints": {"sia": "sia/query", "soda": "soda/sync", "scs": "scs", "tap": "tap",
                      "sources": "viewer/sources", "lightcurve": "viewer/lightcurve"},
    }


def _number(params, name: str, default=None, *, low=-1e300, high=1e300) -> float:
    from romanflow.errors import ParameterError

    text = params.get(name)
    if text is None:
        if default is None:
            raise ParameterError(name, None, "is required")
        return float(default)
    try:
        value = float(text)
    except ValueError:
        raise ParameterError(name, text, "expected a number") from None
    if not (low <= value <= high):
        raise ParameterError(name, text, f"expected a number from {low:g} to {high:g}")
    return value


def _plain(value):
    """A JSON-ready scalar from a table cell (masked and non-finite become None)."""
    import math

    import numpy as np

    if value is np.ma.masked:
        return None
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, (int, str, bool)) or value is None else str(value)


def table_rows(table) -> dict:
    """``{"columns": [...], "rows": [[...], ...]}`` of an astropy table, JSON-ready."""
    names = list(table.colnames)
    return {"columns": names, "rows": [[_plain(row[n]) for n in names] for row in table]}


FORCED_SUFFIX = "_forced"


def sources_json(archive, params) -> dict:
    """Rows of the survey's catalogs (forced-photometry catalogs left out) within ``radius`` deg (at most
    1) of ``ra``, ``dec``: the page's cone search as the view moves."""
    ra = _number(params, "ra", low=-360, high=360)
    dec = _number(params, "dec", low=-90, high=90)
    radius = _number(params, "radius", 0.05, low=0, high=1.0)
    maxrec = int(_number(params, "maxrec", 2000, low=1, high=20000))
    table = archive.cone_sources(ra % 360.0, dec, radius, maxrec=None)
    if len(table):
        keep = [not str(c).endswith(FORCED_SUFFIX) for c in table["catalog_obs_id"]]
        table = table[keep][:maxrec]
        empty = [n for n in table.colnames if all(_plain(v) is None for v in table[n])]
        table.remove_columns(empty)
    return table_rows(table)


def footprints_json(archive, params) -> dict:
    """Outlines (STC-S ``s_region``) of the L2 and L3 images overlapping the cone ``ra``, ``dec``, ``radius``."""
    ra = _number(params, "ra", low=-360, high=360)
    dec = _number(params, "dec", low=-90, high=90)
    radius = _number(params, "radius", 0.05, low=0, high=2.0)
    table = archive.search(ra=ra % 360.0, dec=dec, radius=radius, level=["L2", "L3"], maxrec=2000)
    out = []
    for row in table:
        kind = str(row["product_kind"]) if "product_kind" in table.colnames else ""
        if kind not in ("cal", "coadd"):
            continue
        out.append({"obs_id": str(row["obs_id"]), "level": str(row["product_level"]),
                    "band": _plain(row["optical_element"]), "s_region": _plain(row["s_region"])})
    return {"footprints": out}


def images_json(archive, params) -> dict:
    """The L3 mosaics covering ``ra``, ``dec``: one per band (the most recent), for the page's cutouts."""
    ra = _number(params, "ra", low=-360, high=360)
    dec = _number(params, "dec", low=-90, high=90)
    table = archive.search(ra=ra % 360.0, dec=dec, radius=1e-5, kind="coadd", maxrec=200)
    by_band = {}
    for row in table:
        band = str(row["optical_element"])
        by_band.setdefault(band, str(row["obs_id"]))
    return {"images": [{"band": b, "obs_id": o} for b, o in sorted(by_band.items())]}


def catalog_row_json(archive, params) -> dict:
    """Row ``row`` of the catalog product ``catalog`` (every column of its Parquet file)."""
    import pyarrow.parquet as pq

    from romanflow.errors import ParameterError

    catalog = params.get("catalog") or ""
    row = int(_number(params, "row", low=0, high=1e12))
    product = archive.product(catalog)
    path = Path(product["path"])
    if path.suffix != ".parquet":
        raise ParameterError("catalog", catalog, "is not a catalog product")
    parquet = pq.ParquetFile(path)
    if row >= parquet.metadata.num_rows:
        raise ParameterError("row", row, f"the catalog has {parquet.metadata.num_rows} rows")
    start = 0
    for group in range(parquet.num_row_groups):
        n = parquet.metadata.row_group(group).num_rows
        if row < start + n:
            table = parquet.read_row_group(group).slice(row - start, 1)
            break
        start += n
    names = [n for n in table.column_names if not n.startswith("__")]
    return {"columns": names, "rows": [[_plain_arrow(table.column(n)[0].as_py()) for n in names]]}


def _plain_arrow(value):
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


def _mid_time(archive, product: dict):
    """Mid-exposure MJD of a product, from its own t_min/t_max or from the product it was measured on."""
    t_min, t_max = product.get("t_min"), product.get("t_max")
    if t_min is None:
        try:
            up = archive.lineage(product["obs_id"], direction="up")
        except Exception:  # noqa: BLE001 - no lineage: no time
            return None
        for parent in up["obs_id"] if len(up) else []:
            if str(parent) == product["obs_id"]:
                continue
            try:
                parent_row = archive.product(str(parent))
            except Exception:  # noqa: BLE001 - a parent not in the archive
                continue
            if parent_row.get("t_min") is not None:
                t_min, t_max = parent_row["t_min"], parent_row.get("t_max")
                break
    if t_min is None:
        return None
    return (float(t_min) + float(t_max if t_max is not None else t_min)) / 2.0


def lightcurve_json(archive, params) -> dict:
    """Fixed-position PSF fluxes (nJy) at ``ra``, ``dec`` (within ``radius`` deg, default 0.3") in every
    forced-photometry catalog, with the mid-exposure time (MJD) of the exposure each was measured on."""
    import pyarrow.parquet as pq

    ra = _number(params, "ra", low=-360, high=360)
    dec = _number(params, "dec", low=-90, high=90)
    radius = _number(params, "radius", 0.3 / 3600.0, low=0, high=0.01)
    table = archive.cone_sources(ra % 360.0, dec, radius)
    points, seen = [], set()
    for row in table:
        obs_id = str(row["catalog_obs_id"])
        if not obs_id.endswith(FORCED_SUFFIX) or obs_id in seen:
            continue  # nearest row of each forced catalog only (rows come sorted by distance)
        seen.add(obs_id)
        try:
            product = archive.product(obs_id)
        except Exception:  # noqa: BLE001 - a catalog gone since: left out
            continue
        mjd = _mid_time(archive, product)
        if mjd is None:
            continue
        names = [n for n in table.colnames if n.startswith("psf_") and n.endswith("_flux")]
        errors = {}
        try:
            wanted = [n + "_err" for n in names]
            parquet = pq.ParquetFile(product["path"])
            present = [n for n in wanted if n in parquet.schema_arrow.names]
            if present:
                t = pq.read_table(product["path"], columns=present).slice(int(row["row_index"]), 1)
                errors = {n: t.column(n)[0].as_py() for n in present}
        except Exception:  # noqa: BLE001 - errors are optional
            errors = {}
        for name in names:
            flux = _plain(row[name])
            if flux is None:
                continue
            points.append({"mjd": mjd, "band": name[4:-5].upper(), "flux": flux,
                           "flux_err": _plain_arrow(errors.get(name + "_err")), "catalog": obs_id})
    points.sort(key=lambda p: (p["band"], p["mjd"]))
    return {"ra": ra, "dec": dec, "unit": "nJy", "points": points}


def mount_viewer(app, archive) -> None:
    """Add the viewer page and the HiPS trees of ``archive`` to the Starlette/FastAPI ``app``."""
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
    from starlette.staticfiles import StaticFiles

    index = STATIC_DIR / "index.html"

    async def page(request):
        if not index.is_file():
            return PlainTextResponse("romanflow viewer: static files missing (run make install)", status_code=500)
        return FileResponse(index, media_type="text/html")

    async def config(request):
        return JSONResponse(viewer_config(archive))

    def json_route(function):
        async def handler(request):
            import anyio

            from romanflow.errors import RomanflowError

            params = dict(request.query_params)
            try:
                result = await anyio.to_thread.run_sync(lambda: function(archive, params))
            except RomanflowError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(result)

        return handler

    app.add_route("/", page, methods=["GET"])
    app.add_route("/viewer/config.json", config, methods=["GET"])
    for name, function in (("sources", sources_json), ("footprints", footprints_json), ("images", images_json),
                           ("row", catalog_row_json), ("lightcurve", lightcurve_json)):
        app.add_route(f"/viewer/{name}", json_route(function), methods=["GET"])
    app.mount("/viewer/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="viewer-static")
    root = hips_root(archive)

    async def hips_file(request):
        relative = request.path_params["path"]
        path = hips_file_path(root, relative)
        if path is None:
            blank = blank_tile(root, relative)
            if blank is not None:
                return Response(blank[0], media_type=blank[1], headers={"Cache-Control": "no-cache"})
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, media_type=HIPS_MEDIA_TYPES.get(path.suffix, "text/plain"),
                            headers={"Cache-Control": "no-cache"})

    app.add_route("/hips/{path:path}", hips_file, methods=["GET", "HEAD"])
    _log.info("viewer mounted at /; HiPS trees from %s", root)


__all__ = ["mount_viewer", "hips_root", "hips_trees", "viewer_config", "STATIC_DIR", "HIPS_FOLDER"]
