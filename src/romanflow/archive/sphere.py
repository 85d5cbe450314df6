"""Spherical geometry of footprints: STC-S polygons, exact cone and polygon overlap, HEALPix index cells.

Footprints are spherical polygons whose edges are great-circle arcs (the STC-S ``POLYGON`` convention,
pgSphere's ``spoly``). Angles are degrees at the interface, unit vectors inside.

The HEALPix index of a footprint is the set of cells (nested scheme, depth :data:`INDEX_DEPTH`) that
meet the smallest cap around it; a query's cells cover its own cap. Both are supersets, so the index
never loses a match; :func:`cone_overlaps` and :func:`polygon_overlaps` then decide exactly.
"""

from __future__ import annotations

import math
import re

import numpy as np

#: HEALPix depth of the footprint index (cells of ~6.9 arcmin, about one WFI detector).
INDEX_DEPTH = 9
#: HEALPix depth of the catalog-row index (the depth HATS uses for ``_healpix_29``).
ROW_DEPTH = 29
#: Largest query polygon or cone radius accepted (deg): smaller than a hemisphere by a wide margin.
MAX_QUERY_RADIUS_DEG = 60.0

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def xyz(ra, dec) -> np.ndarray:
    """Unit vectors (..., 3) of (ra, dec) in degrees."""
    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    c = np.cos(dec)
    return np.stack([c * np.cos(ra), c * np.sin(ra), np.sin(dec)], axis=-1)


def radec(v) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) in degrees (ra in [0, 360)) of unit vectors (..., 3)."""
    v = np.asarray(v, float)
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(v[..., 2] / np.linalg.norm(v, axis=-1), -1, 1)))
    return ra, dec


def format_stcs(ra, dec) -> str:
    """STC-S ``POLYGON ICRS ra1 dec1 ra2 dec2 ...`` (deg, 9 decimals)."""
    return "POLYGON ICRS " + " ".join(f"{float(a) % 360.0:.9f} {float(d):.9f}" for a, d in zip(ra, dec))


def parse_stcs(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) vertices (deg) of an STC-S ``POLYGON [frame] ra dec ...``; ValueError if it is not one."""
    text = str(text).strip()
    m = re.fullmatch(r"(?i)polygon(?:\s+(?:icrs|j2000|fk5|unknownframe))?((?:\s+" + _NUMBER + r")+)", text)
    if not m:
        raise ValueError(f"not an STC-S POLYGON: {text[:60]!r}")
    values = np.array(m.group(1).split(), float)
    if len(values) % 2 or len(values) < 6:
        raise ValueError("a polygon needs at least three (ra, dec) vertices")
    return values[0::2], values[1::2]


def check_polygon(ra, dec) -> np.ndarray:
    """Vertices (n, 3) of a usable polygon: >= 3 distinct finite vertices, |dec| <= 90, within
    :data:`MAX_QUERY_RADIUS_DEG` of its centre, edges that do not cross; raises ValueError otherwise."""
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    if ra.shape != dec.shape or ra.ndim != 1 or len(ra) < 3:
        raise ValueError("a polygon needs at least three (ra, dec) vertices")
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))) or np.any(np.abs(dec) > 90):
        raise ValueError("polygon vertices must be finite with -90 <= dec <= 90")
    v = xyz(ra, dec)
    if np.any(np.einsum("ij,ij->i", v, np.roll(v, -1, axis=0)) > 1 - 1e-15):
        raise ValueError("polygon has two equal consecutive vertices")
    centre = v.sum(axis=0)
    if np.linalg.norm(centre) < 1e-9:
        raise ValueError("polygon is too large (it must fit well within a hemisphere)")
    centre /= np.linalg.norm(centre)
    if np.degrees(np.arccos(np.clip(v @ centre, -1, 1))).max() > MAX_QUERY_RADIUS_DEG:
        raise ValueError(f"polygon is too large (vertices farther than {MAX_QUERY_RADIUS_DEG:g} deg from its centre)")
    p = _gnomonic(v[None], centre)[0]
    n = len(p)
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue
            if _segments_cross(p[i], p[(i + 1) % n], p[j], p[(j + 1) % n]):
                raise ValueError("polygon edges cross each other")
    return v


def _segments_cross(a, b, c, d) -> bool:
    def orient(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    return (orient(a, b, c) * orient(a, b, d) < 0) and (orient(c, d, a) * orient(c, d, b) < 0)


def bounding_cap(v: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (3,) and radius (deg) of a cap holding every vertex (n, 3) and so the polygon's edges."""
    centre = v.sum(axis=0)
    centre /= np.linalg.norm(centre)
    radius = float(np.degrees(np.arccos(np.clip(v @ centre, -1, 1))).max())
    return centre, radius


def _gnomonic(v: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Gnomonic (tangent-plane) coordinates (..., 2) of unit vectors (..., 3) around ``centre``.

    Great circles map to straight lines, so edge crossings and point-in-polygon tests are exact there;
    points must lie in the hemisphere of ``centre``.
    """
    z = centre
    helper = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(helper, z)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(z, e1)
    w = v @ z
    return np.stack([(v @ e1) / w, (v @ e2) / w], axis=-1)


def _inside_planar(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd test of points (..., 2) against polygons (..., n, 2) broadcast together."""
    x, y = pts[..., 0][..., None], pts[..., 1][..., None]
    x0, y0 = poly[..., 0], poly[..., 1]
    x1, y1 = np.roll(x0, -1, axis=-1), np.roll(y0, -1, axis=-1)
    straddle = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (np.count_nonzero(straddle & (x < xc), axis=-1) % 2) == 1


def _arc_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (rad) from points p (..., 3) to the minor great-circle arcs a-b (..., 3)."""
    n = np.cross(a, b)
    nn = np.linalg.norm(n, axis=-1, keepdims=True)
    n = n / np.where(nn > 0, nn, 1.0)
    s = np.einsum("...i,...i->...", p, n)
    proj = p - s[..., None] * n
    within = (np.einsum("...i,...i->...", np.cross(a, proj), n) >= 0) & \
             (np.einsum("...i,...i->...", np.cross(proj, b), n) >= 0) & (nn[..., 0] > 0)
    to_line = np.arcsin(np.clip(np.abs(s), 0, 1))
    ends = np.minimum(_angle(p, a), _angle(p, b))
    return np.where(within, np.minimum(to_line, ends), ends)


def _angle(u, v) -> np.ndarray:
    """Angle (rad) between unit vectors, accurate at small angles."""
    return 2.0 * np.arcsin(np.clip(np.linalg.norm(np.asarray(u) - np.asarray(v), axis=-1) / 2.0, 0, 1))


def polygons_contain(polys: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Whether each polygon (m, n, 3) contains the point p (3,): even-odd test in the tangent plane at p
    (exact: edges stay straight lines there); a polygon with a vertex 87 deg or more from p cannot
    contain it (footprints are far smaller)."""
    out = np.zeros(len(polys), bool)
    front = np.flatnonzero((polys @ p).min(axis=1) > 0.05)
    if len(front):
        g = _gnomonic(polys[front], p)
        out[front] = _inside_planar(np.zeros((len(front), 2)), g)
    return out


def cone_overlaps(polys: np.ndarray, ra: float, dec: float, radius: float) -> np.ndarray:
    """Whether each polygon (m, n, 3) meets the cone (deg): centre inside, or an edge within ``radius``."""
    if len(polys) == 0:
        return np.zeros(0, bool)
    p = xyz(ra, dec)
    a, b = polys, np.roll(polys, -1, axis=1)
    d = _arc_distance(np.broadcast_to(p, a.shape), a, b).min(axis=1)
    hit = d <= math.radians(radius)
    rest = ~hit
    if rest.any():
        hit[rest] = polygons_contain(polys[rest], p)
    return hit


def polygon_overlaps(polys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Whether each polygon (m, n, 3) meets the query polygon (k, 3): a vertex inside the other, or crossing edges."""
    if len(polys) == 0:
        return np.zeros(0, bool)
    centre, radius = bounding_cap(query)
    out = np.zeros(len(polys), bool)
    front = (polys @ centre).min(axis=1) > 0.05
    q = _gnomonic(query, centre)
    idx = np.flatnonzero(front)
    if not len(idx):
        return out
    g = _gnomonic(polys[idx], centre)  # (m, n, 2)
    hit = _inside_planar(g, np.broadcast_to(q, (len(idx), *q.shape))[:, None]).any(axis=1)
    hit |= _inside_planar(np.broadcast_to(q, (len(idx), *q.shape)), g[:, None]).any(axis=1)
    a, b = g, np.roll(g, -1, axis=1)  # (m, n, 2)
    c, d = q, np.roll(q, -1, axis=0)  # (k, 2)

    def orient(p, r, s):
        return (r[..., 0] - p[..., 0]) * (s[..., 1] - p[..., 1]) - (r[..., 1] - p[..., 1]) * (s[..., 0] - p[..., 0])

    A, B = a[:, :, None, :], b[:, :, None, :]
    C, D = c[None, None], d[None, None]
    cross = (orient(A, B, C) * orient(A, B, D) <= 0) & (orient(C, D, A) * orient(C, D, B) <= 0)
    hit |= cross.any(axis=(1, 2))
    out[idx] = hit
    return out


def _ranges(ipix, depths, target: int) -> np.ndarray:
    """Cells at several depths as inclusive ranges (k, 2) of cells at depth ``target``, merged."""
    ipix = np.asarray(ipix, np.int64)
    shift = 2 * (target - np.asarray(depths, np.int64))
    lo = ipix << shift
    hi = ((ipix + 1) << shift) - 1
    order = np.argsort(lo)
    lo, hi = lo[order], hi[order]
    out = []
    for a, b in zip(lo.tolist(), hi.tolist()):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return np.array(out, np.int64).reshape(-1, 2)


def _cone_search(ra_deg: float, dec_deg: float, radius_deg: float, depth: int, flat: bool):
    """cdshealpix's cone coverage (cells meeting the cone, a superset) without the astropy wrapping."""
    try:
        from cdshealpix import cdshealpix as rust

        ipix, depths, _ = rust.cone_search(np.uint8(depth), np.uint8(2), np.float64(math.radians(ra_deg % 360.0)),
                                           np.float64(math.radians(dec_deg)), np.float64(math.radians(radius_deg)),
                                           bool(flat))
    except (ImportError, AttributeError, TypeError):  # another cdshealpix layout: the public call
        import astropy.units as u
        from astropy.coordinates import Latitude, Longitude
        from cdshealpix.nested import cone_search

        ipix, depths, _ = cone_search(Longitude(ra_deg % 360.0 * u.deg), Latitude(dec_deg * u.deg),
                                      radius_deg * u.deg, depth, flat=flat)
    return np.asarray(ipix, np.int64), np.asarray(depths, np.int64)


def cap_cells(centre: np.ndarray, radius_deg: float, depth: int = INDEX_DEPTH) -> np.ndarray:
    """Cells at ``depth`` meeting a cap (a superset)."""
    ra, dec = radec(centre)
    ipix, _ = _cone_search(float(ra), float(dec), max(float(radius_deg), 1e-6) * 1.0001, depth, True)
    return np.unique(ipix)


def cap_ranges(ra: float, dec: float, radius_deg: float, target: int) -> np.ndarray:
    """Inclusive ranges of depth-``target`` cells covering a cap (a superset), from a MOC at most ``target`` deep."""
    # a MOC whose finest cells are a few times smaller than the cap keeps the list short
    depth = int(np.clip(math.floor(math.log2(58.6 / max(radius_deg, 1e-9) / 4.0)) + 1, 0, target))
    ipix, depths = _cone_search(float(ra), float(dec), max(float(radius_deg), 1e-7) * 1.0001, depth, False)
    return _ranges(ipix, depths, target)


def footprint_cells(v: np.ndarray) -> np.ndarray:
    """Index cells (depth :data:`INDEX_DEPTH`) of a polygon with vertices (n, 3)."""
    centre, radius = bounding_cap(v)
    return cap_cells(centre, radius)


def point_cells(ra, dec, depth: int = ROW_DEPTH) -> np.ndarray:
    """Nested HEALPix cells (int64) of points (deg) at ``depth``."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import lonlat_to_healpix

    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    return np.asarray(lonlat_to_healpix(Longitude(ra % 360.0 * u.deg), Latitude(dec * u.deg), depth), np.int64)


def separation(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Angular separation (deg)."""
    return np.degrees(_angle(xyz(ra1, dec1), xyz(ra2, dec2)))
