"""Cutouts of L2 and L3 ASDF products on a sky region (the SODA service's core).

A cutout keeps the parent's pixels unchanged: it is the sub-array ``[y0:y0+ny, x0:x0+nx]`` of the
parent's grid (extended past the parent's edge when a neighbouring L3 sky cell on the same projection
fills the rest). Its coordinates travel as

* ASDF: the parent's gwcs with a pixel shift in front (exact);
* FITS: a TAN-SIP approximation of that gwcs fitted over the cutout (``gwcs.WCS.to_fits_sip``);
* PNG: an asinh-stretched preview, north up when the grid is.

Files are opened once (memory-mapped, lazily) and kept in a small cache keyed by path, size and
modification time, so that a request reads only the pixels it returns.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from romanflow.errors import RomanflowError

#: Arrays copied into a cutout when the parent holds them (L2: data, err, dq; L3: data, err, weight, context).
CUTOUT_ARRAYS = ("data", "err", "dq", "weight", "context")
#: Fill values outside every parent, per array.
FILL = {"data": np.nan, "err": np.nan, "dq": 1, "weight": 0, "context": 0}

FORMATS = {
    "asdf": "application/asdf",
    "fits": "application/fits",
    "png": "image/png",
}
_FORMAT_ALIASES = {
    "application/asdf": "asdf", "application/x-asdf": "asdf", "asdf": "asdf",
    "application/fits": "fits", "image/fits": "fits", "fits": "fits",
    "image/png": "png", "png": "png",
}


class CutoutError(RomanflowError):
    """A cutout request cannot be served (bad region, no overlap, too large)."""


# ----------------------------------------------------------------------------------- regions
@dataclass(frozen=True)
class Region:
    """A sky region in ICRS degrees: ``circle`` (ra, dec, radius), ``polygon`` (ra1, dec1, ...) or
    ``range`` (ra_min, ra_max, dec_min, dec_max)."""

    kind: str
    values: tuple

    def boundary(self, n: int = 72) -> tuple[np.ndarray, np.ndarray]:
        """(ra, dec) deg of points on and inside the region's outline, enough to bound its pixels."""
        if self.kind == "circle":
            ra0, dec0, r = self.values
            t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
            ra, dec = _offset(ra0, dec0, r, t)
            return np.append(ra, ra0), np.append(dec, dec0)
        if self.kind == "range":
            ra1, ra2, d1, d2 = self.values
            verts = [(ra1, d1), (ra2, d1), (ra2, d2), (ra1, d2)]
        else:
            v = self.values
            verts = list(zip(v[0::2], v[1::2]))
        ra, dec = [], []
        k = max(2, n // len(verts))
        for (a1, b1), (a2, b2) in zip(verts, verts[1:] + verts[:1]):
            da = ((a2 - a1 + 180.0) % 360.0) - 180.0
            s = np.linspace(0.0, 1.0, k, endpoint=False)
            ra.append(a1 + s * da)
            dec.append(b1 + s * (b2 - b1))
        return np.concatenate(ra) % 360.0, np.concatenate(dec)


def _offset(ra0, dec0, r, pa):
    """Points at angular distance r (deg) from (ra0, dec0) at position angles pa (rad)."""
    ra0, dec0, r = np.radians(ra0), np.radians(dec0), np.radians(r)
    dec = np.arcsin(np.sin(dec0) * np.cos(r) + np.cos(dec0) * np.sin(r) * np.cos(pa))
    ra = ra0 + np.arctan2(np.sin(pa) * np.sin(r) * np.cos(dec0), np.cos(r) - np.sin(dec0) * np.sin(dec))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _numbers(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).replace(",", " ").split()]
    except ValueError:
        raise CutoutError(f"{name}={text!r}: expected numbers separated by spaces") from None
    if not all(math.isfinite(v) for v in values):
        raise CutoutError(f"{name}={text!r}: values must be finite")
    return values


def _check_position(ra, dec, name, text):
    if not (-360.0 <= ra <= 360.0) or not (-90.0 <= dec <= 90.0):
        raise CutoutError(f"{name}={text!r}: ra must lie in [0, 360] and dec in [-90, 90] degrees")


def parse_circle(text: str, name: str = "CIRCLE") -> Region:
    """``"ra dec radius"`` (deg) -> Region."""
    v = _numbers(text, name)
    if len(v) != 3:
        raise CutoutError(f"{name}={text!r}: expected 'ra dec radius' in degrees")
    _check_position(v[0], v[1], name, text)
    if not 0.0 < v[2] <= 90.0:
        raise CutoutError(f"{name}={text!r}: the radius must lie in (0, 90] degrees")
    return Region("circle", (v[0] % 360.0, v[1], v[2]))


def parse_polygon(text: str, name: str = "POLYGON") -> Region:
    """``"ra1 dec1 ra2 dec2 ra3 dec3 ..."`` (deg, at least 3 vertices) -> Region."""
    v = _numbers(text, name)
    if len(v) < 6 or len(v) % 2:
        raise CutoutError(f"{name}={text!r}: expected at least three 'ra dec' vertices in degrees")
    for ra, dec in zip(v[0::2], v[1::2]):
        _check_position(ra, dec, name, text)
    return Region("polygon", tuple(x % 360.0 if i % 2 == 0 else x for i, x in enumerate(v)))


def parse_range(text: str, name: str = "POS") -> Region:
    """``"ra_min ra_max dec_min dec_max"`` (deg) -> Region."""
    v = _numbers(text, name)
    if len(v) != 4:
        raise CutoutError(f"{name}={text!r}: expected RANGE ra_min ra_max dec_min dec_max in degrees")
    if not (v[0] <= v[1] and v[2] <= v[3] and -90.0 <= v[2] and v[3] <= 90.0):
        raise CutoutError(f"{name}={text!r}: expected ra_min <= ra_max and -90 <= dec_min <= dec_max <= 90")
    return Region("range", tuple(v))


def parse_pos(text: str, name: str = "POS") -> Region:
    """A DALI POS value: ``CIRCLE ra dec r``, ``RANGE ra1 ra2 dec1 dec2`` or ``POLYGON ra dec ...``."""
    parts = str(text).strip().split(None, 1)
    if len(parts) != 2:
        raise CutoutError(f"{name}={text!r}: expected CIRCLE, RANGE or POLYGON followed by numbers")
    shape, rest = parts[0].upper(), parts[1]
    if shape == "CIRCLE":
        return parse_circle(rest, name)
    if shape == "POLYGON":
        return parse_polygon(rest, name)
    if shape == "RANGE":
        return parse_range(rest, name)
    raise CutoutError(f"{name}={text!r}: the shape must be CIRCLE, RANGE or POLYGON")


def response_format(value: str | None) -> str:
    """The cutout format (``asdf``, ``fits``, ``png``) named by a RESPONSEFORMAT value (default ASDF)."""
    if value is None or str(value).strip() == "":
        return "asdf"
    key = str(value).strip().lower()
    if key not in _FORMAT_ALIASES:
        raise CutoutError(f"RESPONSEFORMAT={value!r}: choose from {', '.join(FORMATS.values())}")
    return _FORMAT_ALIASES[key]


# ----------------------------------------------------------------------------------- products
@dataclass
class OpenProduct:
    """An L2 or L3 ASDF product opened for cutting: memory-mapped arrays and the gwcs."""

    path: Path
    obs_id: str
    level: int
    wcs: object
    arrays: dict
    shape: tuple
    meta: dict = field(default_factory=dict)
    handle: object = None

    def world_to_pixel(self, ra, dec):
        x, y = self.wcs.invert(np.asarray(ra, float), np.asarray(dec, float), with_bounding_box=False)
        return np.asarray(x, float), np.asarray(y, float)

    def pixel_to_world(self, x, y):
        ra, dec = self.wcs(np.asarray(x, float), np.asarray(y, float), with_bounding_box=False)
        return np.asarray(ra, float), np.asarray(dec, float)


_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: How many products stay open.
CACHE_SIZE = 32


def open_product(path, obs_id: str = "", level: int | None = None) -> OpenProduct:
    """Open (or take from the cache) the ASDF product at ``path``."""
    import asdf

    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise CutoutError(f"{obs_id or path.name}: the product's file cannot be read ({exc.strerror})") from None
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    try:
        af = asdf.open(path, lazy_load=True, memmap=True, validate_checksums=False)
        node = af.tree["roman"]
        wcs = node["meta"]["wcs"]
        arrays = {}
        for name in CUTOUT_ARRAYS:
            if name in node and node[name] is not None:
                a = node[name]
                arrays[name] = a if isinstance(a, np.ndarray) else np.asarray(a)
        if "data" not in arrays or wcs is None:
            raise CutoutError(f"{obs_id or path.name}: the product holds no image with a WCS to cut")
        meta = {}
        try:
            meta["optical_element"] = str(node["meta"]["instrument"]["optical_element"])
        except (KeyError, TypeError):
            pass
        try:
            meta["skycell"] = str(node["meta"]["wcsinfo"]["skycell_name"])
        except (KeyError, TypeError):
            pass
    except CutoutError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the request's problem, reported in one line
        raise CutoutError(f"{obs_id or path.name}: the product's file cannot be read as ASDF ({type(exc).__name__})") \
            from None
    if level is None:
        level = 3 if "weight" in arrays or "context" in arrays else 2
    prod = OpenProduct(path=path, obs_id=obs_id or path.stem, level=int(level), wcs=wcs, arrays=arrays,
                       shape=tuple(arrays["data"].shape[-2:]), meta=meta, handle=af)
    with _CACHE_LOCK:
        _CACHE[key] = prod
        while len(_CACHE) > CACHE_SIZE:
            _, old = _CACHE.popitem(last=False)
            # the file stays open while a request may still read it; the garbage collector closes it
    return prod


# ----------------------------------------------------------------------------------- cutting
@dataclass
class Cutout:
    """The cut arrays, their origin ``(x0, y0)`` in the parent's pixel grid, and the sliced gwcs."""

    arrays: dict
    x0: int
    y0: int
    parent: OpenProduct
    sources: list  # obs_ids of the products whose pixels it holds

    @property
    def shape(self):
        return self.arrays["data"].shape[-2:]

    @property
    def wcs(self):
        return shifted_gwcs(self.parent.wcs, self.x0, self.y0, self.shape)


def shifted_gwcs(wcs, x0: int, y0: int, shape):
    """The gwcs of the sub-grid starting at pixel (x0, y0) of ``wcs``'s grid, ``shape`` = (ny, nx)."""
    from astropy.modeling import models
    from gwcs.wcs import WCS

    shift = models.Shift(float(x0), name="cutout_x0") & models.Shift(float(y0), name="cutout_y0")
    forward = shift | wcs.forward_transform
    out = WCS(forward_transform=forward, input_frame=wcs.input_frame, output_frame=wcs.output_frame)
    ny, nx = shape
    out.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    try:
        out.array_shape = (ny, nx)
    except AttributeError:
        pass
    return out


def pixel_box(product: OpenProduct, region: Region) -> tuple[int, int, int, int]:
    """Inclusive pixel bounds (x_min, x_max, y_min, y_max) of the region in the product's grid (unclipped)."""
    ra, dec = region.boundary()
    x, y = product.world_to_pixel(ra, dec)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.all():
        raise CutoutError(f"{product.obs_id}: the region lies outside the product's coordinate domain")
    return (int(np.floor(x.min() + 0.5)), int(np.floor(x.max() + 0.5)),
            int(np.floor(y.min() + 0.5)), int(np.floor(y.max() + 0.5)))


def _aligned_offset(parent: OpenProduct, other: OpenProduct, tol: float = 1e-3):
    """Integer (dx, dy) with other's pixel (i, j) = parent's pixel (i + dx, j + dy), or None if the grids differ."""
    ny, nx = other.shape
    xs = np.array([0.0, nx - 1.0, 0.0, (nx - 1) / 2.0])
    ys = np.array([0.0, 0.0, ny - 1.0, (ny - 1) / 2.0])
    ra, dec = other.pixel_to_world(xs, ys)
    px, py = parent.world_to_pixel(ra, dec)
    dx, dy = px - xs, py - ys
    if not (np.all(np.isfinite(dx)) and np.all(np.isfinite(dy))):
        return None
    rx, ry = round(float(dx[0])), round(float(dy[0]))
    if np.max(np.abs(dx - rx)) > tol or np.max(np.abs(dy - ry)) > tol:
        return None
    return rx, ry


def make_cutout(product: OpenProduct, region: Region, *, max_pixels: int = 4096 * 4096,
                neighbours=(), box=None) -> Cutout:
    """Cut ``region`` out of ``product``.

    For an L3 product, ``neighbours`` (other L3 products of the same band) fill the part of the region
    that lies past the product's edge, when their grids are the product's grid shifted by whole
    pixels (sky cells of one projection region): the cutout is then one array on one grid.
    ``box``: the region's :func:`pixel_box` when already known.
    """
    ny_p, nx_p = product.shape
    bx0, bx1, by0, by1 = box if box is not None else pixel_box(product, region)
    if product.level < 3 or not neighbours:
        bx0, bx1, by0, by1 = max(bx0, 0), min(bx1, nx_p - 1), max(by0, 0), min(by1, ny_p - 1)
        if bx0 > bx1 or by0 > by1:
            raise CutoutError(f"ID={product.obs_id}: the region does not overlap the product")
    nx, ny = bx1 - bx0 + 1, by1 - by0 + 1
    if nx * ny > max_pixels:
        raise CutoutError(f"the cutout would hold {nx}x{ny} pixels, more than the limit of {max_pixels}")
    names = [n for n in CUTOUT_ARRAYS if n in product.arrays]
    out = {}
    for n in names:
        a = product.arrays[n]
        out[n] = np.full(a.shape[:-2] + (ny, nx), FILL[n], dtype=a.dtype if a.dtype.kind != "i" or n != "data" else np.float32)
    filled = np.zeros((ny, nx), dtype=bool)
    sources = []

    def paste(src: OpenProduct, dx: int, dy: int, only_covered: bool = True) -> None:
        # region of the cutout in src's own pixels: parent pixel p = src pixel + (dx, dy)
        sx0, sx1 = bx0 - dx, bx1 - dx
        sy0, sy1 = by0 - dy, by1 - dy
        h, w = src.shape
        cx0, cx1, cy0, cy1 = max(sx0, 0), min(sx1, w - 1), max(sy0, 0), min(sy1, h - 1)
        if cx0 > cx1 or cy0 > cy1:
            return
        oy, ox = slice(cy0 - sy0, cy1 - sy0 + 1), slice(cx0 - sx0, cx1 - sx0 + 1)
        todo = ~filled[oy, ox]
        if only_covered and "weight" in src.arrays:
            todo &= np.asarray(src.arrays["weight"][cy0:cy1 + 1, cx0:cx1 + 1]) > 0
        if not todo.any():
            return
        for n in names:
            if n in src.arrays:
                block = np.asarray(src.arrays[n][..., cy0:cy1 + 1, cx0:cx1 + 1])
                target = out[n][..., oy, ox]
                if block.shape == target.shape:
                    target[..., todo] = block[..., todo]
        filled[oy, ox] |= todo
        if src.obs_id not in sources:
            sources.append(src.obs_id)

    paste(product, 0, 0)
    if product.level >= 3 and not filled.all():
        for other in neighbours:
            if other.path == product.path or other.level < 3:
                continue
            offset = _aligned_offset(product, other)
            if offset is not None:
                paste(other, *offset)
            if filled.all():
                break
        paste(product, 0, 0, only_covered=False)  # the product's own uncovered pixels, as they are
    if not sources:
        raise CutoutError(f"ID={product.obs_id}: the region does not overlap the product")
    if product.level < 3 or not neighbours:
        # an L2 (or lone L3) cutout is the plain sub-array, flags and all
        for n in names:
            out[n] = np.ascontiguousarray(product.arrays[n][..., by0:by1 + 1, bx0:bx1 + 1])
    return Cutout(arrays=out, x0=bx0, y0=by0, parent=product, sources=sources)


# ----------------------------------------------------------------------------------- writers
def _asdf_tree(cut: Cutout, x0, y0) -> dict:
    meta = {
        "wcs": shifted_gwcs(cut.parent.wcs, x0, y0, cut.shape),
        "cutout": {"parent_obs_id": cut.parent.obs_id, "parent_file": cut.parent.path.name,
                   "x0": x0, "y0": y0, "sources": list(cut.sources)},
    }
    meta.update(cut.parent.meta)
    return {"roman": {"meta": meta, **{n: a for n, a in cut.arrays.items()}}}


def _asdf_bytes(tree) -> bytes:
    import asdf

    buf = io.BytesIO()
    asdf.AsdfFile(tree).write_to(buf, write_checksums=False)
    return buf.getvalue()


# Serialising a gwcs costs ~0.1 s (asdf validates the tagged tree on every write), so a cutout's ASDF
# file is made from a template: the file of a cutout of the same parent, shape and arrays written once
# with sentinel origins, whose sentinels are overwritten (same width) and whose array blocks are refilled.
_X_SENTINEL, _Y_SENTINEL = 12345678.25, 23456789.25
_IX_SENTINEL, _IY_SENTINEL = 987654321, 876543219
_TEMPLATES: OrderedDict = OrderedDict()


@dataclass
class _Template:
    data: bytes
    replace: list  # (offset, width, kind) kind in x, y, ix, iy
    blocks: dict  # array name -> data offset


def _make_template(cut: Cutout) -> _Template | None:
    import asdf

    tree = _asdf_tree(cut, _X_SENTINEL, _Y_SENTINEL)
    tree["roman"]["meta"]["cutout"]["x0"], tree["roman"]["meta"]["cutout"]["y0"] = _IX_SENTINEL, _IY_SENTINEL
    data = _asdf_bytes(tree)
    replace = []
    for kind, token in (("x", repr(_X_SENTINEL)), ("y", repr(_Y_SENTINEL)), ("ix", str(_IX_SENTINEL)),
                        ("iy", str(_IY_SENTINEL))):
        raw = token.encode()
        if data.count(raw) != 1:
            return None
        replace.append((data.index(raw), len(raw), kind))
    blocks = {}
    with asdf.open(io.BytesIO(data), lazy_load=True, memmap=False) as af:
        for name in cut.arrays:
            blocks[name] = af.tree["roman"][name]._source
    index = data.rfind(b"#ASDF BLOCK INDEX")
    if index < 0:
        return None
    import yaml

    offsets = yaml.safe_load(data[index:].split(b"\n", 1)[1])
    out = {}
    for name, source in blocks.items():
        if not isinstance(source, int) or source >= len(offsets):
            return None
        head = offsets[source]
        header_size = int.from_bytes(data[head + 4:head + 6], "big")
        out[name] = head + 6 + header_size
    return _Template(data, replace, out)


def to_asdf(cut: Cutout) -> bytes:
    """The cutout as an ASDF file: ``roman.meta.wcs`` (the parent's gwcs with the origin shift), the
    arrays, and ``roman.meta.cutout`` (parent, origin, the products whose pixels it holds)."""
    x0, y0 = int(cut.x0), int(cut.y0)
    key = (str(cut.parent.path), cut.parent.shape, tuple(cut.sources),
           tuple((n, a.dtype.str, a.shape) for n, a in cut.arrays.items()))
    with _CACHE_LOCK:
        template = _TEMPLATES.get(key)
    if template is None:
        template = _make_template(cut) or False
        with _CACHE_LOCK:
            _TEMPLATES[key] = template
            while len(_TEMPLATES) > 64:
                _TEMPLATES.popitem(last=False)
    values = {"x": f"{float(x0)!r}", "y": f"{float(y0)!r}", "ix": str(x0), "iy": str(y0)}
    if template is False or any(len(values[k]) > w for _, w, k in template.replace) or \
            not all(a.dtype.byteorder in "<=|" for a in cut.arrays.values()):
        return _asdf_bytes(_asdf_tree(cut, float(x0), float(y0)))
    out = bytearray(template.data)
    for offset, width, kind in template.replace:
        out[offset:offset + width] = values[kind].rjust(width).encode()
    for name, offset in template.blocks.items():
        raw = np.ascontiguousarray(cut.arrays[name]).tobytes()
        out[offset:offset + len(raw)] = raw
    return bytes(out)


def fits_header(cut: Cutout, max_pix_error: float = 0.005):
    """A TAN-SIP FITS header approximating the cutout's gwcs over its pixels."""
    ny, nx = cut.shape
    sliced = cut.wcs
    bbox = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    kwargs = dict(bounding_box=bbox, max_pix_error=max_pix_error, degree=None, max_inv_pix_error=None,
                  npoints=max(16, min(64, max(nx, ny))))
    try:
        header = sliced.to_fits_sip(**kwargs)
    except Exception:  # noqa: BLE001 - tiny cutouts cannot constrain high degrees: fall back to degree 2
        kwargs.update(degree=2)
        header = sliced.to_fits_sip(**kwargs)
    return header


def to_fits(cut: Cutout) -> bytes:
    """The cutout as FITS: one image extension per array, each with the SIP WCS."""
    from astropy.io import fits

    header = fits_header(cut)
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = "romanflow"
    primary.header["PARENTID"] = cut.parent.obs_id
    primary.header["CUTX0"] = (int(cut.x0), "cutout origin in the parent grid (0-based x)")
    primary.header["CUTY0"] = (int(cut.y0), "cutout origin in the parent grid (0-based y)")
    for key, value in cut.parent.meta.items():
        primary.header[key[:8].upper()] = str(value)
    hdus = [primary]
    extname = {"data": "SCI", "err": "ERR", "dq": "DQ", "weight": "WHT", "context": "CON"}
    for n, a in cut.arrays.items():
        # FITS has no float16 or uint32 images: widen (every value kept exactly)
        data = a.astype(np.float32) if a.dtype == np.float16 else (a.astype(np.int64) if a.dtype == np.uint32 else a)
        hdr = header.copy()
        if data.ndim == 3:  # context planes: the celestial axes are the first two FITS axes
            hdr["WCSAXES"] = 2
        h = fits.ImageHDU(data=data, header=hdr, name=extname[n])
        hdus.append(h)
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def to_png(data: np.ndarray, max_side: int = 2048) -> bytes:
    """An asinh-stretched 8-bit PNG of ``data`` (row 0 at the bottom)."""
    from PIL import Image

    a = np.asarray(data, dtype=np.float32)
    step = max(1, int(math.ceil(max(a.shape) / max_side)))
    a = a[::step, ::step]
    good = np.isfinite(a)
    img = np.zeros(a.shape, dtype=np.uint8)
    if good.any():
        lo, hi = np.percentile(a[good], [1.0, 99.7])
        if hi <= lo:
            hi = lo + 1.0
        scaled = np.clip((a - lo) / (hi - lo), 0.0, 1.0)
        stretched = np.arcsinh(10.0 * scaled) / np.arcsinh(10.0)
        img = np.where(good, np.round(stretched * 255.0), 0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img[::-1]).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def encode(cut: Cutout, fmt: str) -> bytes:
    """Bytes of the cutout in ``fmt`` (``asdf``, ``fits``, ``png``)."""
    if fmt == "fits":
        return to_fits(cut)
    if fmt == "png":
        return to_png(cut.arrays["data"])
    return to_asdf(cut)


def file_size(path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1
