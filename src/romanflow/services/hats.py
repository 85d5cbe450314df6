"""HATS catalogs over HTTP: static files with range requests, and folder listings, under ``/hats/NAME/``.

``lsdb.read_hats("http://HOST:PORT/hats/NAME")`` opens such a catalog remotely: it reads
``properties``, ``partition_info.csv`` and the Parquet metadata and files, the latter by byte ranges.

Catalogs served: those named in the configuration (``name -> folder``) and every folder holding a HATS
``properties`` file under ``ARCHIVE_ROOT/hats/``. A request names a catalog and a path inside it; the
path is resolved (symbolic links included) and must stay inside the catalog's folder, else 404.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape

from fastapi import Request

from romanflow.services.params import NotFound

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_MIME = {".parquet": "application/vnd.apache.parquet", ".csv": "text/csv", ".json": "application/json",
         ".fits": "application/fits", "": "text/plain"}


def hats_catalogs(archive, configured: dict | None = None) -> dict[str, Path]:
    """Name -> folder of every HATS catalog served."""
    out = {}
    root = Path(archive.root) / "hats"
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and (child / "properties").is_file() and _NAME.match(child.name):
                out[child.name] = child.resolve()
    for name, folder in (configured or {}).items():
        out[str(name)] = Path(folder).resolve()
    return out


def resolve_inside(folder: Path, relative: str) -> Path:
    """``folder / relative`` resolved, or NotFound when it leaves ``folder`` or does not exist."""
    if "\x00" in relative or relative.startswith(("/", "\\")) or "\\" in relative:
        raise NotFound("no such file")
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise NotFound("no such file")
    target = folder.joinpath(*parts) if parts else folder
    try:
        real = target.resolve(strict=True)
    except (OSError, RuntimeError):
        raise NotFound("no such file") from None
    if not real.is_relative_to(folder):
        raise NotFound("no such file")
    return real


def mount_hats(app, archive, config) -> None:
    """Add the ``/hats`` routes to ``app``."""
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.responses import FileResponse

    def catalogs():
        return hats_catalogs(archive, config.hats)

    @app.get("/hats", tags=["hats"])
    @app.get("/hats/", include_in_schema=False)
    def hats_index():
        """Names of the HATS catalogs served."""
        return JSONResponse({"catalogs": sorted(catalogs())})

    @app.head("/hats/{name}/{path:path}", include_in_schema=False)
    @app.get("/hats/{name}/{path:path}", tags=["hats"])
    def hats_file(name: str, path: str, request: Request):
        """A file of a HATS catalog (byte ranges accepted) or a folder listing."""
        folder = catalogs().get(name)
        if folder is None or not folder.is_dir():
            raise NotFound(f"{name!r}: no such HATS catalog")
        real = resolve_inside(folder, path)
        if real.is_dir():
            entries = []
            for child in sorted(real.iterdir()):
                try:
                    inside = child.resolve().is_relative_to(folder)
                except (OSError, RuntimeError):
                    inside = False
                if inside:
                    label = child.name + ("/" if child.is_dir() else "")
                    entries.append(f'<a href="{quote(label)}">{escape(label)}</a>')
            return HTMLResponse("<!doctype html><html><body>\n" + "<br>\n".join(entries) + "\n</body></html>")
        return FileResponse(real, media_type=_MIME.get(real.suffix, "application/octet-stream"))

    @app.api_route("/hats/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    def hats_root(name: str, request: Request):
        return hats_file(name, "", request)
