"""The sky tessellation: projection regions and the sky cells that tile them.

The sphere is cut into *projection regions* along iso-latitude rings placed at
the HEALPix ring latitudes of ``nside`` (12, the table's ``meta['nside']``): a
polar cap around each pole (HEALPix rings 1 and 4·nside−1 fold into it), then
one band per remaining ring, centred on the ring latitude with edges half-way to
the next rings. A band
for ring ``i`` is split in right ascension into ``8·min(i, 4·nside−i, nside)``
equal segments, twice the HEALPix pixel count of that ring.

Each region is one gnomonic (TAN) plane with its tangent point at the region
centre (the pole for a cap), north up, at :data:`PIXEL_SCALE` arcsec per pixel.
The plane is tiled by square *sky cells* of ``nxy`` (5000) pixels stepping by
``nxy − border`` (4900) pixels, so neighbouring cells share a strip of
``border`` (100) pixels on the same pixel grid. The *core* of a cell is its
central ``nxy − border`` pixels (pixels 50 … 4949): cores tile the plane without
gaps or overlap, so every position on the sky lies in the core of exactly one
cell of its own region. A cell exists when its core meets the region's bounds.

Names follow the official pattern ``270p65x48y69``: the region tangent point's
right ascension (3 digits) and declination (``p``/``m`` and 2 digits, rounded to
degrees), then the cell's column and row in the region grid.

The table of regions is data, written by ``tools/make_skymap.py`` and shipped as
``romanflow/data/skymap_regions.parquet`` (3442 rows, ~0.2 MB); cells are
derived from it on demand (about 11 million of them in total). The projection
itself is :mod:`romanflow.kernels.sky_projection`.

Coordinate conventions: pixel ``(0, 0)`` is ``data[0, 0]`` with its centre at
integer coordinates; region pixel ``X = i·step + x`` for pixel ``x`` of cell
column ``i``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from romanflow.errors import InputFileError, ParameterError, RomanflowError
from romanflow.kernels.sky_projection import rects_meet_polygon, tan_deproject, tan_project

#: Mosaic pixel scale (arcsec per pixel).
PIXEL_SCALE = 0.055
#: Visit-grid pixel scale (arcsec per pixel): same cells, pixels 2x2 binned.
VISIT_PIXEL_SCALE = 0.11
#: Pixels per sky-cell side.
NXY_SKYCELL = 5000
#: Pixels shared by neighbouring cells.
BORDER_PIXELS = 100

SKYMAP_PATH = Path(__file__).resolve().parent.parent / "data" / "skymap_regions.parquet"

__all__ = [
    "BORDER_PIXELS", "NXY_SKYCELL", "PIXEL_SCALE", "SKYMAP_PATH", "VISIT_PIXEL_SCALE", "Region", "SkyMap",
    "cutout_wcs", "image_footprint", "load_skymap", "rects_meet_polygon", "region_outline", "skycell_containing",
    "skycell_wcs", "skycell_wcs_info", "skycells_for_image", "skycells_touching", "tan_deproject", "tan_project",
]

_NAME_RE = re.compile(r"^(\d{3})([pm])(\d{2})x(\d+)y(\d+)$")


# --------------------------------------------------------------------- region outlines
def region_outline(ra_min, ra_max, dec_min, dec_max, n_parallel=256, n_meridian=16):
    """(ra, dec) of a region's boundary, densely sampled, in order (deg).

    A polar cap (``dec_max`` 90 or ``dec_min`` −90) is its one parallel; a band segment is
    its two parallels (``n_parallel`` points each) joined by its two meridians.
    """
    if dec_max >= 90.0 or dec_min <= -90.0:
        dec_edge = dec_min if dec_max >= 90.0 else dec_max
        ra = np.linspace(0, 360, 4 * n_parallel, endpoint=False)
        return ra, np.full_like(ra, dec_edge)
    ra_top = np.linspace(ra_min, ra_max, n_parallel)
    dec_side = np.linspace(dec_max, dec_min, n_meridian)[1:-1]
    ra = np.concatenate([ra_top, np.full(dec_side.size, ra_max), ra_top[::-1], np.full(dec_side.size, ra_min)])
    dec = np.concatenate([np.full(n_parallel, dec_max), dec_side, np.full(n_parallel, dec_min), dec_side[::-1]])
    return ra, dec


# --------------------------------------------------------------------- the sky map
@dataclass(frozen=True)
class Region:
    """One projection region (a row of the region table, as plain values)."""

    index: int
    ra_tangent: float
    dec_tangent: float
    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float
    x_tangent: float
    y_tangent: float
    ncell_x: int
    ncell_y: int

    @property
    def prefix(self) -> str:
        sign = "p" if self.dec_tangent >= 0 else "m"
        return f"{int(round(self.ra_tangent)) % 360:03d}{sign}{int(round(abs(self.dec_tangent))):02d}"

    @property
    def is_polar(self) -> bool:
        return self.dec_max >= 90.0 or self.dec_min <= -90.0

    def contains(self, ra, dec) -> np.ndarray:
        ra = np.asarray(ra, dtype=float) % 360.0
        dec = np.asarray(dec, dtype=float)
        in_dec = (dec >= self.dec_min) & ((dec < self.dec_max) | (self.dec_max >= 90.0))
        return in_dec & (ra >= self.ra_min) & (ra < self.ra_max)


class SkyMap:
    """The tessellation: region table plus look-ups for cells and positions.

    Parameters
    ----------
    table : astropy.table.Table
        The region table (``tools/make_skymap.py`` writes the shipped one).
    """

    def __init__(self, table):
        self.table = table
        self.pixel_scale = float(table.meta["pixel_scale"])
        self.nxy = int(table.meta["nxy_skycell"])
        self.border = int(table.meta["skycell_border_pixels"])
        self.step = self.nxy - self.border
        self.regions = [
            Region(int(r["index"]), float(r["ra_tangent"]), float(r["dec_tangent"]), float(r["ra_min"]),
                   float(r["ra_max"]), float(r["dec_min"]), float(r["dec_max"]), float(r["x_tangent"]),
                   float(r["y_tangent"]), int(r["ncell_x"]), int(r["ncell_y"]))
            for r in table
        ]
        self._by_prefix = {reg.prefix: reg.index for reg in self.regions}
        if len(self._by_prefix) != len(self.regions):
            raise RomanflowError("sky map: region name prefixes are not unique")
        # band look-up: dec lower edges (north to south) and the first region of each band
        dec_min = np.array([r.dec_min for r in self.regions])
        starts = [0] + [k for k in range(1, len(self.regions)) if dec_min[k] != dec_min[k - 1]]
        self._band_start = np.array(starts + [len(self.regions)])
        self._band_dec_min = dec_min[starts]

    # -- regions
    def region_index(self, ra, dec) -> np.ndarray:
        """Index of the region that owns each position (deg)."""
        ra = np.asarray(ra, dtype=float) % 360.0
        dec = np.asarray(dec, dtype=float)
        # bands are ordered north to south with descending lower edges
        band = np.searchsorted(-self._band_dec_min, -dec, side="right")
        band = np.clip(band, 0, len(self._band_dec_min) - 1)
        first = self._band_start[band]
        n_seg = self._band_start[band + 1] - first
        seg = np.minimum((ra / 360.0 * n_seg).astype(np.int64), n_seg - 1)
        return first + seg

    def region_pixel(self, region: Region, ra, dec):
        """Region-grid pixel coordinates (X, Y) of positions (deg)."""
        xi, eta = tan_project(ra, dec, region.ra_tangent, region.dec_tangent)
        scale = self.pixel_scale / 3600.0
        return region.x_tangent - xi / scale, region.y_tangent + eta / scale

    @functools.lru_cache(maxsize=256)
    def _region_outline_pixels(self, index: int):
        reg = self.regions[index]
        ra, dec = region_outline(reg.ra_min, reg.ra_max, reg.dec_min, reg.dec_max)
        return self.region_pixel(reg, ra, dec)

    # -- names
    def name(self, region_index: int, i: int, j: int) -> str:
        return f"{self.regions[region_index].prefix}x{int(i):02d}y{int(j):02d}"

    def parse(self, name: str) -> tuple[Region, int, int]:
        """(region, column, row) of a cell name; RomanflowError when unknown."""
        m = _NAME_RE.match(str(name).strip())
        if not m:
            raise RomanflowError(f"'{name}' is not a sky cell name (expected e.g. 270p65x48y69)")
        prefix = f"{m.group(1)}{m.group(2)}{m.group(3)}"
        if prefix not in self._by_prefix:
            raise RomanflowError(f"sky cell '{name}': no projection region {prefix}")
        reg = self.regions[self._by_prefix[prefix]]
        i, j = int(m.group(4)), int(m.group(5))
        if not (0 <= i < reg.ncell_x and 0 <= j < reg.ncell_y):
            raise RomanflowError(
                f"sky cell '{name}': index outside region {prefix} ({reg.ncell_x} x {reg.ncell_y} cells)"
            )
        return reg, i, j

    # -- cells
    def cell_origin(self, i: int, j: int) -> tuple[int, int]:
        """Region-grid pixel of a cell's pixel (0, 0)."""
        return i * self.step, j * self.step

    def containing(self, ra, dec) -> list[str]:
        """Name of the cell whose core holds each position (deg)."""
        ra = np.atleast_1d(np.asarray(ra, dtype=float))
        dec = np.atleast_1d(np.asarray(dec, dtype=float))
        idx = self.region_index(ra, dec)
        names = [""] * ra.size
        half = self.border / 2.0 - 0.5
        for r in np.unique(idx):
            sel = np.nonzero(idx == r)[0]
            reg = self.regions[r]
            X, Y = self.region_pixel(reg, ra[sel], dec[sel])
            i = np.clip(np.floor((X - half) / self.step).astype(int), 0, reg.ncell_x - 1)
            j = np.clip(np.floor((Y - half) / self.step).astype(int), 0, reg.ncell_y - 1)
            for k, s in enumerate(sel):
                names[s] = self.name(r, i[k], j[k])
        return names

    def candidate_regions(self, ra, dec, margin: float = 0.25) -> list[int]:
        """Regions whose bounds, widened by ``margin`` deg, meet the box around the points."""
        ra = np.asarray(ra, dtype=float) % 360.0
        dec = np.asarray(dec, dtype=float)
        ra_c = float(np.degrees(np.arctan2(np.sin(np.radians(ra)).mean(), np.cos(np.radians(ra)).mean())) % 360)
        rel = (ra - ra_c + 180.0) % 360.0 - 180.0
        dmin, dmax = dec.min() - margin, dec.max() + margin
        out = []
        for reg in self.regions:
            if reg.dec_max < dmin or reg.dec_min > dmax:
                continue
            if reg.is_polar or dmax >= 89.0 or dmin <= -89.0:
                out.append(reg.index)
                continue
            cosd = max(math.cos(math.radians(max(abs(dmin), abs(dmax)))), 1e-3)
            m = margin / cosd
            lo = (reg.ra_min - ra_c + 180.0) % 360.0 - 180.0
            width = reg.ra_max - reg.ra_min
            # the segment [lo, lo+width] (mod 360) against [rel.min-m, rel.max+m]
            a, b = rel.min() - m, rel.max() + m
            for shift in (-360.0, 0.0, 360.0):
                if lo + shift <= b and lo + shift + width >= a:
                    out.append(reg.index)
                    break
        return out

    def touching(self, ra, dec) -> list[str]:
        """Names of existing cells whose full footprint meets a sky polygon.

        Parameters
        ----------
        ra, dec : array_like
            Polygon vertices (deg), in order; edges are great-circle arcs, so densify
            curved outlines (as :func:`skycells_for_image` does).
        """
        ra = np.asarray(ra, dtype=float).ravel()
        dec = np.asarray(dec, dtype=float).ravel()
        if ra.size < 3 or ra.size != dec.size:
            raise RomanflowError("a footprint polygon needs at least 3 (ra, dec) vertices")
        names = []
        for r in self.candidate_regions(ra, dec):
            reg = self.regions[r]
            X, Y = self.region_pixel(reg, ra, dec)
            if not np.all(np.isfinite(X)):
                continue
            i_lo = max(int(math.ceil((X.min() - (self.nxy - 0.5)) / self.step)), 0)
            i_hi = min(int(math.floor((X.max() + 0.5) / self.step)), reg.ncell_x - 1)
            j_lo = max(int(math.ceil((Y.min() - (self.nxy - 0.5)) / self.step)), 0)
            j_hi = min(int(math.floor((Y.max() + 0.5) / self.step)), reg.ncell_y - 1)
            if i_lo > i_hi or j_lo > j_hi:
                continue
            ii, jj = np.meshgrid(np.arange(i_lo, i_hi + 1), np.arange(j_lo, j_hi + 1))
            ii, jj = ii.ravel(), jj.ravel()
            x0 = ii * self.step - 0.5
            y0 = jj * self.step - 0.5
            hit = rects_meet_polygon(x0, x0 + self.nxy, y0, y0 + self.nxy, X, Y)
            if not hit.any():
                continue
            ii, jj = ii[hit], jj[hit]
            c0 = self.border / 2.0 - 0.5
            ox, oy = self._region_outline_pixels(r)
            cx0 = ii * self.step + c0
            cy0 = jj * self.step + c0
            exists = rects_meet_polygon(cx0, cx0 + self.step, cy0, cy0 + self.step, ox, oy)
            names.extend(self.name(r, a, b) for a, b in zip(ii[exists], jj[exists]))
        return sorted(set(names))

    def cell_exists(self, name: str) -> bool:
        """True when the cell's core meets its region's bounds."""
        reg, i, j = self.parse(name)
        ox, oy = self._region_outline_pixels(reg.index)
        c0 = self.border / 2.0 - 0.5
        x0, y0 = np.array([i * self.step + c0]), np.array([j * self.step + c0])
        return bool(rects_meet_polygon(x0, x0 + self.step, y0, y0 + self.step, ox, oy)[0])


@functools.lru_cache(maxsize=1)
def load_skymap(path=None) -> SkyMap:
    """The sky map from a region table (default: the shipped one, :data:`SKYMAP_PATH`)."""
    from astropy.table import Table

    path = Path(path) if path is not None else SKYMAP_PATH
    if not path.exists():
        raise InputFileError(path, "sky map region table not found (tools/make_skymap.py writes it)")
    return SkyMap(Table.read(path))


# --------------------------------------------------------------------- public functions
def skycell_wcs(name: str, pixel_scale: float = PIXEL_SCALE, skymap: SkyMap | None = None):
    """Celestial WCS of a sky cell's pixel grid.

    Parameters
    ----------
    name : str
        Cell name such as ``'270p65x48y69'``.
    pixel_scale : float
        0.055 for the mosaic grid (5000 px) or 0.11 for the visit grid (2500 px,
        each pixel a 2x2 block of the mosaic grid); any integer binning of the
        mosaic scale is accepted.

    Returns
    -------
    astropy.wcs.WCS
        TAN, north up at the tangent point, ``array_shape`` set.
    """
    from astropy.wcs import WCS

    sm = skymap or load_skymap()
    reg, i, j = sm.parse(name)
    binning = float(pixel_scale) / sm.pixel_scale
    b = int(round(binning)) if math.isfinite(binning) else 0
    if b < 1 or abs(binning - b) > 1e-9 or sm.nxy % b:
        raise ParameterError("pixel_scale", pixel_scale,
                             f"must be an integer binning of the sky cell's {sm.pixel_scale}\" pixels (0.055, 0.11, ...)")
    ox, oy = sm.cell_origin(i, j)
    # fine pixel x -> binned pixel (x - (b-1)/2) / b
    x_t = (reg.x_tangent - ox - (b - 1) / 2.0) / b
    y_t = (reg.y_tangent - oy - (b - 1) / 2.0) / b
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crval = [reg.ra_tangent, reg.dec_tangent]
    w.wcs.crpix = [x_t + 1.0, y_t + 1.0]
    scale = b * sm.pixel_scale / 3600.0
    w.wcs.cdelt = [-scale, scale]
    w.wcs.lonpole = 180.0
    w.wcs.set()
    n = sm.nxy // b
    w.array_shape = (n, n)
    return w


def check_cutout(wcs, x0: int, y0: int, nx: int, ny: int, *, inside: bool = True, name: str = "cutout") -> None:
    """Check a sub-grid ``[y0:y0+ny, x0:x0+nx]`` of ``wcs``'s pixel grid.

    Raises a ParameterError (named ``name``) when the size is not positive, or when
    the sub-grid does not lie inside the grid (``inside=True``) or misses it entirely
    (``inside=False``).
    """
    full_ny, full_nx = (int(v) for v in wcs.array_shape)
    value = [x0, y0, nx, ny]
    if nx < 1 or ny < 1:
        raise ParameterError(name, value, "the cutout size NX NY must be positive")
    if inside and (x0 < 0 or y0 < 0 or x0 + nx > full_nx or y0 + ny > full_ny):
        raise ParameterError(name, value, f"the cutout must lie inside the sky cell's {full_nx}x{full_ny} pixel "
                                          f"grid (0 <= X0 and X0 + NX <= {full_nx}, the same for Y)")
    if x0 >= full_nx or y0 >= full_ny or x0 + nx <= 0 or y0 + ny <= 0:
        raise ParameterError(name, value, f"the cutout lies outside the sky cell's {full_nx}x{full_ny} pixel grid")


def cutout_wcs(wcs, x0: int, y0: int, nx: int, ny: int):
    """WCS of the sub-grid ``[y0:y0+ny, x0:x0+nx]`` of a celestial astropy WCS (same pixels).

    The sub-grid may extend past the grid's edges (the projection goes on), but it must be
    non-empty and meet the grid: a ParameterError otherwise (:func:`check_cutout`).
    """
    check_cutout(wcs, x0, y0, nx, ny, inside=False)
    sub = wcs.deepcopy()
    sub.wcs.crpix = [wcs.wcs.crpix[0] - x0, wcs.wcs.crpix[1] - y0]
    sub.wcs.set()
    sub.array_shape = (int(ny), int(nx))
    return sub


def skycell_wcs_info(name: str, pixel_scale: float = PIXEL_SCALE, skymap: SkyMap | None = None) -> dict:
    """The association's ``skycell_wcs_info`` block for a cell."""
    sm = skymap or load_skymap()
    reg, _, _ = sm.parse(name)
    w = skycell_wcs(name, pixel_scale, sm)
    ny, nx = w.array_shape
    ra_c, dec_c = w.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    return {
        "name": name,
        "pixel_scale": float(pixel_scale) / 3600.0,
        "ra_projection_center": reg.ra_tangent,
        "dec_projection_center": reg.dec_tangent,
        "x0_projection": float(w.wcs.crpix[0] - 1.0),
        "y0_projection": float(w.wcs.crpix[1] - 1.0),
        "ra_center": float(ra_c),
        "dec_center": float(dec_c),
        "nx": int(nx),
        "ny": int(ny),
        "orientat": 0.0,
        "orientat_projection_center": 0.0,
    }


def skycell_containing(ra, dec, skymap: SkyMap | None = None) -> list[str]:
    """Name of the cell whose core holds each (ra, dec) (deg)."""
    return (skymap or load_skymap()).containing(ra, dec)


def skycells_touching(ra, dec, skymap: SkyMap | None = None) -> list[str]:
    """Cells whose 5000-px footprint meets the sky polygon with vertices (ra, dec) deg."""
    return (skymap or load_skymap()).touching(ra, dec)


def image_footprint(wcs, shape, n_per_side: int = 16):
    """(ra, dec) deg of an image's outline (pixel edges), densified to ``n_per_side`` points per side.

    ``wcs`` is anything with ``pixel_to_world_values`` (gwcs, astropy WCS) or a
    ``pixel_to_world(x, y) -> (ra, dec)`` method (DetectorProjection).
    """
    ny, nx = shape
    t = np.linspace(0.0, 1.0, n_per_side, endpoint=False)
    lo_x, hi_x, lo_y, hi_y = -0.5, nx - 0.5, -0.5, ny - 0.5
    x = np.concatenate([lo_x + t * (hi_x - lo_x), np.full_like(t, hi_x), hi_x - t * (hi_x - lo_x), np.full_like(t, lo_x)])
    y = np.concatenate([np.full_like(t, lo_y), lo_y + t * (hi_y - lo_y), np.full_like(t, hi_y), hi_y - t * (hi_y - lo_y)])
    from romanflow.mosaic.pixmap import pixel_to_world

    return pixel_to_world(wcs, x, y, clip_to_bounds=False)


def skycells_for_image(wcs, shape, skymap: SkyMap | None = None) -> list[str]:
    """Cells an image with this WCS and (ny, nx) shape touches."""
    ra, dec = image_footprint(wcs, shape)
    return skycells_touching(ra, dec, skymap)
