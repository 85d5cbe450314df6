"""Focal-plane geometry of the Wide Field Instrument: pixels to the telescope frame to the sky.

This module is the single source of the WFI geometry. The simulator takes its
true WCS from here, the reference synthesizer writes :func:`distortion_transform`
into the distortion reference file, assign_wcs rebuilds the same chain from that
file and the exposure metadata, and the mosaic uses :class:`DetectorProjection`
for fast pixel maps.

Frames and conventions
----------------------
``detector``
    0-based science-pixel coordinates ``(x, y)`` of one detector, the reference
    border excluded: pixel ``(0, 0)`` is ``data[0, 0]`` of an L2 image, its centre
    at integer coordinates. This is galsim.roman's image position minus one.
``v2v3``
    Telescope frame, arcsec. (V2, V3) are spherical longitude/latitude about the
    boresight V1 = (0, 0), with the handedness of (RA, Dec).
``world``
    ICRS (ra, dec) in degrees.

The sky transform is the one the official pipeline uses: convert (V2, V3) to a
unit vector and apply ``RotationSequence3D([v2_ref, -v3_ref, roll_ref, dec_ref,
-ra_ref], 'zyxyz')`` (angles in degrees). It takes the aperture reference point
(``v2_ref``, ``v3_ref``) to (``ra_ref``, ``dec_ref``), and ``roll_ref`` is the
position angle (east of north) of the +V3 direction at that point; +V2 then lies
at ``roll_ref + 90``. An optional velocity-aberration scale multiplies
(V2 − v2_ref, V3 − v3_ref) before the rotation.

The distortion is derived from galsim.roman's model (SIP coefficients and SCA
positions of the 2021-02-04 optical design), placed in the telescope frame with
the WFI centre at the ``WFI_CEN`` reference point (:data:`WFI_CEN_V2V3`) and
galsim's observatory position angle equal to ``roll_ref``. For each detector a
2-D polynomial of degree :data:`POLY_DEGREE` maps pixels to (V2, V3); it
reproduces galsim's model to ~1e-8 mas. The focal plane here is rigid. galsim
orients each detector from the sky's north at the detector centre, which equals
a rigid focal plane when its focal-plane axes lie along north (``roll_ref`` 60
or 240 deg, where the two agree to < 1e-3 mas) and departs from it by up to
~6 mas at other rolls; the polynomials are derived at such an aligned pointing.

Small detectors
---------------
Tests run on ``science_size`` x ``science_size`` arrays (e.g. 248). Such a
detector is the central patch of the real one: its pixel ``(x, y)`` is real
pixel ``(x + o, y + o)`` with ``o = (4088 - science_size) / 2``, so the physics
(scale, distortion, position in the field) is that of the real detector centre.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numba as _numba
import numpy as np

from romanflow.detector import DETECTORS, N_PIX_SCIENCE, detector_name, detector_number
from romanflow.errors import RomanflowError

__all__ = [
    "WFI_CEN_V2V3",
    "V3_IDEAL_Y_ANGLE",
    "VPARITY",
    "POLY_DEGREE",
    "Pointing",
    "pointing_for",
    "pointing_from_meta",
    "pointing_meta",
    "distortion_transform",
    "detector_gwcs",
    "DetectorProjection",
    "wcsinfo_meta",
    "s_region",
    "detectors_covering",
    "detector_center_v2v3",
    "fit_rms_mas",
    "galsim_wcs",
    "rotation_matrix",
    "v2v3_to_world",
    "world_to_v2v3",
]

#: (V2, V3) of the WFI_CEN aperture reference point, arcsec.
WFI_CEN_V2V3 = (1546.3846181707652, -892.7916365721071)
#: Angle of the aperture ideal Y axis from +V3 (deg); ``wcsinfo.v3yangle``.
V3_IDEAL_Y_ANGLE = -60.0
#: Parity of the ideal frame relative to (V2, V3); ``wcsinfo.vparity``.
VPARITY = -1
#: Degree of the pixel -> (V2, V3) polynomials.
POLY_DEGREE = 5
#: Degree of the fitted inverse polynomials ((V2, V3) -> pixel), refined by Newton steps.
INVERSE_DEGREE = 5

_CENTER = (N_PIX_SCIENCE - 1) / 2.0  # 2043.5, centre of a full detector (0-based)
_PIX_NORM = N_PIX_SCIENCE / 2.0  # 2044: normalises full-detector pixel offsets to [-1, 1]
_V_NORM = 300.0  # arcsec: normalises (V2, V3) offsets from a detector centre for the inverse fit
_ARCSEC = math.pi / (180.0 * 3600.0)


# --------------------------------------------------------------------------- pointing
@dataclass(frozen=True)
class Pointing:
    """Where the telescope points: the aperture reference point on the sky and the roll.

    Attributes
    ----------
    ra_ref, dec_ref : float
        ICRS position of the reference point (deg).
    roll_ref : float
        Position angle of +V3 at the reference point, east of north (deg).
    v2_ref, v3_ref : float
        Telescope-frame position of the reference point (arcsec).
    va_scale : float
        Velocity-aberration scale applied about (v2_ref, v3_ref); 1 for none.
    aperture_name : str
        Name of the reference aperture (``WFI_CEN`` by default).
    """

    ra_ref: float
    dec_ref: float
    roll_ref: float
    v2_ref: float = WFI_CEN_V2V3[0]
    v3_ref: float = WFI_CEN_V2V3[1]
    va_scale: float = 1.0
    aperture_name: str = "WFI_CEN"

    def with_offsets(self, dra_arcsec: float = 0.0, ddec_arcsec: float = 0.0, droll_deg: float = 0.0):
        """Return a copy moved by (dRA·cos δ, dδ) in arcsec on the sky and rolled by ``droll_deg``."""
        cosd = math.cos(math.radians(self.dec_ref))
        return replace(
            self,
            ra_ref=(self.ra_ref + dra_arcsec / 3600.0 / max(cosd, 1e-12)) % 360.0,
            dec_ref=self.dec_ref + ddec_arcsec / 3600.0,
            roll_ref=self.roll_ref + droll_deg,
        )


def pointing_for(ra: float, dec: float, pa: float, *, va_scale: float = 1.0) -> Pointing:
    """Pointing with the WFI centre (``WFI_CEN``) at (ra, dec).

    Parameters
    ----------
    ra, dec : float
        ICRS position of the WFI centre (deg).
    pa : float
        Position angle of the telescope +V3 axis at the WFI centre, east of
        north (deg); this is ``roll_ref`` (and galsim.roman's observatory ``PA``).
        The aperture position angle (ideal +Y) is ``pa + v3yangle = pa - 60``.
    va_scale : float
        Velocity-aberration scale factor (1 for none).
    """
    dec = float(dec)
    if not -90.0 <= dec <= 90.0:
        raise RomanflowError(f"declination {dec} deg out of range [-90, 90]")
    return Pointing(float(ra) % 360.0, dec, float(pa) % 360.0, va_scale=float(va_scale))


def pointing_from_meta(meta: dict) -> Pointing:
    """Pointing from an exposure's metadata (``wcsinfo`` and ``velocity_aberration``)."""
    wcsinfo = meta.get("wcsinfo") if isinstance(meta, dict) else None
    if not isinstance(wcsinfo, dict):
        raise RomanflowError("metadata has no wcsinfo: cannot build the pointing")
    missing = [k for k in ("ra_ref", "dec_ref", "roll_ref", "v2_ref", "v3_ref") if wcsinfo.get(k) is None]
    if missing:
        raise RomanflowError(f"metadata wcsinfo lacks {', '.join(missing)}: cannot build the pointing")
    va = meta.get("velocity_aberration") or {}
    scale = va.get("scale_factor", 1.0) if isinstance(va, dict) else 1.0
    return Pointing(
        float(wcsinfo["ra_ref"]),
        float(wcsinfo["dec_ref"]),
        float(wcsinfo["roll_ref"]),
        float(wcsinfo["v2_ref"]),
        float(wcsinfo["v3_ref"]),
        float(scale if scale is not None else 1.0),
        str(wcsinfo.get("aperture_name") or "WFI_CEN"),
    )


# ------------------------------------------------------------------- sky rotation
@lru_cache(maxsize=256)
def _rotation_matrix_cached(v2_ref, v3_ref, roll_ref, dec_ref, ra_ref):
    from astropy.modeling.models import RotationSequence3D

    rot = RotationSequence3D([v2_ref / 3600.0, -v3_ref / 3600.0, roll_ref, dec_ref, -ra_ref], axes_order="zyxyz")
    cols = rot(np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]))
    matrix = np.array(cols, dtype=float)  # matrix[:, k] = image of basis vector k
    matrix.setflags(write=False)
    return matrix


def rotation_matrix(pointing: Pointing) -> np.ndarray:
    """3x3 matrix taking telescope-frame unit vectors to ICRS unit vectors.

    Identical to ``RotationSequence3D([v2_ref, -v3_ref, roll_ref, dec_ref, -ra_ref], 'zyxyz')``.
    """
    p = pointing
    return _rotation_matrix_cached(float(p.v2_ref), float(p.v3_ref), float(p.roll_ref),
                                   float(p.dec_ref), float(p.ra_ref))


def _unit_vectors(lon_deg_or_rad, lat, *, degrees=True):
    lon = np.radians(lon_deg_or_rad) if degrees else lon_deg_or_rad
    lat = np.radians(lat) if degrees else lat
    cl = np.cos(lat)
    return cl * np.cos(lon), cl * np.sin(lon), np.sin(lat)


def v2v3_to_world(v2, v3, pointing: Pointing):
    """Telescope frame (arcsec) to ICRS (deg), velocity aberration included."""
    v2 = np.asarray(v2, dtype=float)
    v3 = np.asarray(v3, dtype=float)
    if pointing.va_scale != 1.0:
        v2 = pointing.v2_ref + pointing.va_scale * (v2 - pointing.v2_ref)
        v3 = pointing.v3_ref + pointing.va_scale * (v3 - pointing.v3_ref)
    x, y, z = _unit_vectors(v2 * _ARCSEC, v3 * _ARCSEC, degrees=False)
    m = rotation_matrix(pointing)
    X = m[0, 0] * x + m[0, 1] * y + m[0, 2] * z
    Y = m[1, 0] * x + m[1, 1] * y + m[1, 2] * z
    Z = m[2, 0] * x + m[2, 1] * y + m[2, 2] * z
    ra = np.degrees(np.arctan2(Y, X)) % 360.0
    dec = np.degrees(np.arcsin(np.clip(Z, -1.0, 1.0)))
    return ra, dec


def world_to_v2v3(ra, dec, pointing: Pointing):
    """ICRS (deg) to the telescope frame (arcsec), velocity aberration removed."""
    X, Y, Z = _unit_vectors(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
    m = rotation_matrix(pointing)
    x = m[0, 0] * X + m[1, 0] * Y + m[2, 0] * Z
    y = m[0, 1] * X + m[1, 1] * Y + m[2, 1] * Z
    z = m[0, 2] * X + m[1, 2] * Y + m[2, 2] * Z
    v2 = np.arctan2(y, x) / _ARCSEC
    v3 = np.arcsin(np.clip(z, -1.0, 1.0)) / _ARCSEC
    if pointing.va_scale != 1.0:
        v2 = pointing.v2_ref + (v2 - pointing.v2_ref) / pointing.va_scale
        v3 = pointing.v3_ref + (v3 - pointing.v3_ref) / pointing.va_scale
    return v2, v3


# ------------------------------------------------------- distortion from galsim.roman
@dataclass(frozen=True)
class _DetectorFit:
    """Polynomials of one detector, in normalised coordinates.

    Forward: ``u = (x_full - 2043.5) / 2044`` (same for v/y);
    ``v2 = Σ fx[i, j] u^i v^j``, ``v3 = Σ fy[i, j] u^i v^j`` (arcsec).
    Inverse: ``a = (v2 - v2c) / 300``, ``b = (v3 - v3c) / 300``;
    ``u = Σ gx[i, j] a^i b^j``, ``v = Σ gy[i, j] a^i b^j``.
    """

    fx: np.ndarray
    fy: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    v2c: float
    v3c: float
    fit_rms_mas: float


def _horner2d(c, u, v):
    """Σ c[i, j] u^i v^j (i + j <= degree) by nested Horner; u, v float arrays."""
    degree = c.shape[0] - 1
    out = None
    for i in range(degree, -1, -1):
        row = c[i]
        inner = np.full_like(v, row[degree - i])
        for j in range(degree - i - 1, -1, -1):
            inner *= v
            inner += row[j]
        if out is None:
            out = inner
        else:
            out *= u
            out += inner
    return out


def _design(u, v, degree):
    cols, index = [], []
    for i in range(degree + 1):
        for j in range(degree + 1 - i):
            cols.append(u**i * v**j)
            index.append((i, j))
    return np.stack(cols, axis=-1), index


def _lstsq_poly(u, v, target, degree):
    a, index = _design(u, v, degree)
    sol, *_ = np.linalg.lstsq(a, target, rcond=None)
    c = np.zeros((degree + 1, degree + 1))
    for (i, j), value in zip(index, sol):
        c[i, j] = value
    return c


# Pointing used to place galsim's focal plane in the telescope frame: roll 240 deg
# puts galsim's focal-plane axes along north, where its model is that of a rigid
# focal plane (see the module docstring).
_DERIVATION_RA, _DERIVATION_DEC, _DERIVATION_PA = 90.0, 0.0, 240.0
_DERIVATION_DATE = datetime.datetime(2025, 3, 20, 9, 2, 0)


def galsim_wcs(pointing: Pointing, detectors=None, date: datetime.datetime | None = None) -> dict:
    """galsim.roman's WCS for a WFI_CEN pointing: ``{detector_name: GSFitsWCS}``.

    galsim's image position is this module's pixel plus one. ``date`` only has to
    be one at which galsim allows the pointing (sun angle); by default a date is
    searched for.
    """
    import galsim
    import galsim.roman as roman

    if abs(pointing.v2_ref - WFI_CEN_V2V3[0]) > 1e-6 or abs(pointing.v3_ref - WFI_CEN_V2V3[1]) > 1e-6:
        raise RomanflowError("galsim.roman WCS is defined for WFI_CEN pointings only")
    world = galsim.CelestialCoord(pointing.ra_ref * galsim.degrees, pointing.dec_ref * galsim.degrees)
    if date is None:
        date = _allowed_date(world)
    scas = [detector_number(d) for d in (detectors or DETECTORS)]
    wcs = roman.getWCS(world_pos=world, PA=pointing.roll_ref * galsim.degrees, date=date, SCAs=scas)
    return {detector_name(k): v for k, v in wcs.items()}


def _allowed_date(world):
    import galsim.roman as roman

    start = datetime.datetime(2027, 1, 1)
    for day in range(0, 366, 3):
        date = start + datetime.timedelta(days=day)
        if roman.allowedPos(world, date):
            return date
    raise RomanflowError("galsim.roman allows this position on no date of 2027")


@lru_cache(maxsize=1)
def _all_fits() -> dict:
    """Fit the pixel <-> (V2, V3) polynomials of all 18 detectors to galsim.roman's model."""
    pointing = pointing_for(_DERIVATION_RA, _DERIVATION_DEC, _DERIVATION_PA)
    wcs = galsim_wcs(pointing, date=_DERIVATION_DATE)
    n = 33
    grid = np.linspace(-0.5, N_PIX_SCIENCE - 0.5, n)
    xg, yg = (a.ravel() for a in np.meshgrid(grid, grid))
    ug, vg = (xg - _CENTER) / _PIX_NORM, (yg - _CENTER) / _PIX_NORM
    # independent check points between the fit nodes
    mid = 0.5 * (grid[1:] + grid[:-1])
    xc, yc = (a.ravel() for a in np.meshgrid(mid, mid))
    fits = {}
    for name in DETECTORS:
        w = wcs[name]
        ra, dec = w.toWorld(xg + 1.0, yg + 1.0, units="deg")
        v2, v3 = world_to_v2v3(ra, dec, pointing)
        fx = _lstsq_poly(ug, vg, v2, POLY_DEGREE)
        fy = _lstsq_poly(ug, vg, v3, POLY_DEGREE)
        v2c, v3c = float(_horner2d(fx, np.zeros(1), np.zeros(1))[0]), float(_horner2d(fy, np.zeros(1), np.zeros(1))[0])
        a, b = (v2 - v2c) / _V_NORM, (v3 - v3c) / _V_NORM
        gx = _lstsq_poly(a, b, ug, INVERSE_DEGREE)
        gy = _lstsq_poly(a, b, vg, INVERSE_DEGREE)
        rac, decc = w.toWorld(xc + 1.0, yc + 1.0, units="deg")
        v2t, v3t = world_to_v2v3(rac, decc, pointing)
        uc, vc = (xc - _CENTER) / _PIX_NORM, (yc - _CENTER) / _PIX_NORM
        d2 = _horner2d(fx, uc, vc) - v2t
        d3 = _horner2d(fy, uc, vc) - v3t
        rms = float(np.sqrt(np.mean(d2**2 + d3**2)) * 1000.0)
        fits[name] = _DetectorFit(fx, fy, gx, gy, v2c, v3c, rms)
    return fits


def _fit(detector) -> _DetectorFit:
    return _all_fits()[detector_name(detector)]


def _patch_offset(science_size: int) -> float:
    science_size = int(science_size)
    if not 0 < science_size <= N_PIX_SCIENCE:
        raise RomanflowError(f"science size {science_size} not supported: must be 1..{N_PIX_SCIENCE}")
    return (N_PIX_SCIENCE - science_size) / 2.0


def detector_center_v2v3(detector) -> tuple[float, float]:
    """(V2, V3) of a detector's centre pixel (2043.5, 2043.5), arcsec."""
    f = _fit(detector)
    return f.v2c, f.v3c


def fit_rms_mas(detector) -> float:
    """RMS (mas) of the polynomial against galsim.roman at points between the fit nodes."""
    return _fit(detector).fit_rms_mas


def _poly_model(c, scale):
    from astropy.modeling.models import Polynomial2D

    degree = c.shape[0] - 1
    params = {f"c{i}_{j}": float(c[i, j]) / scale ** (i + j) for i in range(degree + 1) for j in range(degree + 1 - i)}
    return Polynomial2D(degree, **params)


def distortion_transform(detector, science_size: int = N_PIX_SCIENCE):
    """Astropy model: detector pixel (x, y), 0-based -> (V2, V3) arcsec, with an analytic inverse.

    For ``science_size`` < 4088 the detector is the central patch of the real one
    (pixel ``(x, y)`` of the patch is real pixel ``(x + o, y + o)``,
    ``o = (4088 - science_size) / 2``). The inverse is a fitted polynomial,
    accurate to about 1e-4 pixel; :class:`DetectorProjection` refines it exactly.
    """
    from astropy.modeling.models import Mapping, Shift

    f = _fit(detector)
    offset = _patch_offset(science_size)
    shift = offset - _CENTER
    forward = (Shift(shift) & Shift(shift)) | Mapping((0, 1, 0, 1)) | (
        _poly_model(f.fx, _PIX_NORM) & _poly_model(f.fy, _PIX_NORM))
    gx = np.asarray(f.gx) * _PIX_NORM  # polynomial now gives centred pixel offsets
    gy = np.asarray(f.gy) * _PIX_NORM
    inverse = (Shift(-f.v2c) & Shift(-f.v3c)) | Mapping((0, 1, 0, 1)) | (
        _poly_model(gx, _V_NORM) & _poly_model(gy, _V_NORM)) | (Shift(-shift) & Shift(-shift))
    forward.inverse = inverse
    forward.name = f"{detector_name(detector)}_distortion"
    return forward


# --------------------------------------------------------------------------- gwcs
def _bounding_box(science_size):
    return ((-0.5, science_size - 0.5), (-0.5, science_size - 0.5))


def detector_gwcs(detector, pointing: Pointing, science_size: int = N_PIX_SCIENCE, distortion=None):
    """gwcs.WCS of one detector: ``detector`` -> ``v2v3`` -> ``v2v3vacorr`` -> ``world`` (ICRS).

    Parameters
    ----------
    detector : str or int
        ``'WFI01'`` … ``'WFI18'``.
    pointing : Pointing
        Reference point, roll and velocity-aberration scale.
    science_size : int
        Pixels per side of the science array (4088, or a central patch).
    distortion : astropy model, optional
        Pixel -> (V2, V3) arcsec (e.g. from a distortion reference file); by
        default :func:`distortion_transform`.
    """
    from astropy import coordinates, units as u
    from astropy.modeling.models import Identity, RotationSequence3D, Scale, Shift
    from gwcs import coordinate_frames as cf
    from gwcs import geometry
    from gwcs.wcs import WCS

    if distortion is None:
        distortion = distortion_transform(detector, science_size)
    p = pointing
    if p.va_scale != 1.0:
        s = float(p.va_scale)
        va = (Shift(-p.v2_ref) & Shift(-p.v3_ref)) | (Scale(s) & Scale(s)) | (Shift(p.v2_ref) & Shift(p.v3_ref))
    else:
        va = Identity(2)
    va.name = "dva_correction"
    rot = RotationSequence3D([p.v2_ref / 3600.0, -p.v3_ref / 3600.0, p.roll_ref, p.dec_ref, -p.ra_ref],
                             axes_order="zyxyz")
    tel2sky = ((Scale(1 / 3600.0) & Scale(1 / 3600.0)) | geometry.SphericalToCartesian(wrap_lon_at=180)
               | rot | geometry.CartesianToSpherical(wrap_lon_at=360))
    tel2sky.name = "v2v3_to_sky"

    detector_frame = cf.Frame2D(name="detector", axes_order=(0, 1), axes_names=("x", "y"), unit=(u.pix, u.pix))
    v2v3 = cf.Frame2D(name="v2v3", axes_order=(0, 1), axes_names=("v2", "v3"), unit=(u.arcsec, u.arcsec))
    v2v3vacorr = cf.Frame2D(name="v2v3vacorr", axes_order=(0, 1), axes_names=("v2", "v3"),
                            unit=(u.arcsec, u.arcsec))
    world = cf.CelestialFrame(reference_frame=coordinates.ICRS(), name="world", axes_names=("ra", "dec"),
                              unit=(u.deg, u.deg))
    wcs = WCS([(detector_frame, distortion), (v2v3, va), (v2v3vacorr, tel2sky), (world, None)])
    wcs.bounding_box = _bounding_box(science_size)
    wcs.array_shape = (science_size, science_size)
    return wcs


# ------------------------------------------------------------- fast projection

# Fused per-point kernels (numba): polynomial, velocity aberration, rotation and
# trigonometry in one pass, without temporaries. Coefficients are triangular
# (i + j <= degree) in normalised coordinates as in _DetectorFit.
@_numba.njit(inline="always")
def _poly_point(c, u, v):
    degree = c.shape[0] - 1
    out = 0.0
    for i in range(degree, -1, -1):
        inner = 0.0
        for j in range(degree - i, -1, -1):
            inner = inner * v + c[i, j]
        out = out * u + inner
    return out


@_numba.njit(parallel=True, cache=True)
def _pixel_to_world_kernel(x, y, shift, fx, fy, v2_ref, v3_ref, va, m, ra, dec):
    """x, y pixel -> ra, dec (deg); shift = patch offset - 2043.5 (pixel)."""
    rad = math.pi / (180.0 * 3600.0)
    for k in _numba.prange(x.size):
        u = (x[k] + shift) / 2044.0
        v = (y[k] + shift) / 2044.0
        v2 = _poly_point(fx, u, v)
        v3 = _poly_point(fy, u, v)
        v2 = (v2_ref + va * (v2 - v2_ref)) * rad
        v3 = (v3_ref + va * (v3 - v3_ref)) * rad
        c3 = math.cos(v3)
        px = c3 * math.cos(v2)
        py = c3 * math.sin(v2)
        pz = math.sin(v3)
        X = m[0, 0] * px + m[0, 1] * py + m[0, 2] * pz
        Y = m[1, 0] * px + m[1, 1] * py + m[1, 2] * pz
        Z = m[2, 0] * px + m[2, 1] * py + m[2, 2] * pz
        a = math.degrees(math.atan2(Y, X))
        if a < 0.0:
            a += 360.0
        ra[k] = a
        dec[k] = math.degrees(math.asin(min(1.0, max(-1.0, Z))))


@_numba.njit(parallel=True, cache=True)
def _world_to_pixel_kernel(ra, dec, shift, fx, fy, dfx_du, dfx_dv, dfy_du, dfy_dv, gx, gy, v2c, v3c,
                           v_norm, v2_ref, v3_ref, va, m, n_newton, x, y):
    """ra, dec (deg) -> x, y pixel: inverse polynomial then Newton steps on the forward one."""
    rad = math.pi / (180.0 * 3600.0)
    for k in _numba.prange(ra.size):
        r = math.radians(ra[k])
        d = math.radians(dec[k])
        cd = math.cos(d)
        X = cd * math.cos(r)
        Y = cd * math.sin(r)
        Z = math.sin(d)
        px = m[0, 0] * X + m[1, 0] * Y + m[2, 0] * Z
        py = m[0, 1] * X + m[1, 1] * Y + m[2, 1] * Z
        pz = m[0, 2] * X + m[1, 2] * Y + m[2, 2] * Z
        v2 = math.atan2(py, px) / rad
        v3 = math.asin(min(1.0, max(-1.0, pz))) / rad
        v2 = v2_ref + (v2 - v2_ref) / va
        v3 = v3_ref + (v3 - v3_ref) / va
        a = (v2 - v2c) / v_norm
        b = (v3 - v3c) / v_norm
        u = _poly_point(gx, a, b)
        v = _poly_point(gy, a, b)
        for _ in range(n_newton):
            r2 = _poly_point(fx, u, v) - v2
            r3 = _poly_point(fy, u, v) - v3
            j11 = _poly_point(dfx_du, u, v)
            j12 = _poly_point(dfx_dv, u, v)
            j21 = _poly_point(dfy_du, u, v)
            j22 = _poly_point(dfy_dv, u, v)
            det = j11 * j22 - j12 * j21
            u -= (j22 * r2 - j12 * r3) / det
            v -= (j11 * r3 - j21 * r2) / det
        x[k] = u * 2044.0 - shift
        y[k] = v * 2044.0 - shift

class DetectorProjection:
    """Fast vectorised pixel <-> sky mapping of one detector for one pointing.

    Numerically the same chain as :func:`detector_gwcs` (agreement ~1e-12 deg),
    evaluated per point by a parallel numba kernel: nested-Horner polynomials,
    velocity aberration, one 3x3 rotation; the inverse is a fitted polynomial
    followed by Newton steps on the forward polynomial (round trip ~1e-9 pixel).

    Parameters
    ----------
    detector : str or int
    pointing : Pointing
    science_size : int
        Pixels per side (central patch for sizes < 4088).
    """

    def __init__(self, detector, pointing: Pointing, science_size: int = N_PIX_SCIENCE):
        self.detector = detector_name(detector)
        self.pointing = pointing
        self.science_size = int(science_size)
        self._fit = _fit(detector)
        self._offset = _patch_offset(science_size)
        f = self._fit
        # derivatives of the forward polynomials with respect to u and v
        deg = f.fx.shape[0] - 1
        k = np.arange(deg + 1, dtype=float)
        self._dfx_du = np.zeros_like(f.fx); self._dfx_du[:-1] = f.fx[1:] * k[1:, None]
        self._dfy_du = np.zeros_like(f.fy); self._dfy_du[:-1] = f.fy[1:] * k[1:, None]
        self._dfx_dv = np.zeros_like(f.fx); self._dfx_dv[:, :-1] = f.fx[:, 1:] * k[None, 1:]
        self._dfy_dv = np.zeros_like(f.fy); self._dfy_dv[:, :-1] = f.fy[:, 1:] * k[None, 1:]
        self._matrix = np.array(rotation_matrix(pointing))  # writable copy: one numba signature

    # -- pixel <-> v2v3
    def _uv(self, x, y):
        return (x + (self._offset - _CENTER)) / _PIX_NORM, (y + (self._offset - _CENTER)) / _PIX_NORM

    def pixel_to_v2v3(self, x, y):
        """Pixel (0-based) -> (V2, V3) arcsec, before velocity aberration."""
        u, v = self._uv(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        return _horner2d(self._fit.fx, u, v), _horner2d(self._fit.fy, u, v)

    def v2v3_to_pixel(self, v2, v3, n_newton: int = 2):
        """(V2, V3) arcsec -> pixel (0-based): fitted inverse then Newton steps."""
        f = self._fit
        v2 = np.asarray(v2, dtype=float)
        v3 = np.asarray(v3, dtype=float)
        a, b = (v2 - f.v2c) / _V_NORM, (v3 - f.v3c) / _V_NORM
        u, v = _horner2d(f.gx, a, b), _horner2d(f.gy, a, b)
        for _ in range(n_newton):
            r2 = _horner2d(f.fx, u, v) - v2
            r3 = _horner2d(f.fy, u, v) - v3
            j11, j12 = _horner2d(self._dfx_du, u, v), _horner2d(self._dfx_dv, u, v)
            j21, j22 = _horner2d(self._dfy_du, u, v), _horner2d(self._dfy_dv, u, v)
            det = j11 * j22 - j12 * j21
            u = u - (j22 * r2 - j12 * r3) / det
            v = v - (j11 * r3 - j21 * r2) / det
        shift = self._offset - _CENTER
        return u * _PIX_NORM - shift, v * _PIX_NORM - shift

    # -- pixel <-> world
    def pixel_to_world(self, x, y):
        """Pixel (0-based) -> (ra, dec) deg. Accepts any broadcastable arrays."""
        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        shape = x.shape
        ra = np.empty(x.size)
        dec = np.empty(x.size)
        p = self.pointing
        _pixel_to_world_kernel(np.ascontiguousarray(x).ravel(), np.ascontiguousarray(y).ravel(),
                               self._offset - _CENTER, self._fit.fx, self._fit.fy, float(p.v2_ref),
                               float(p.v3_ref), float(p.va_scale), self._matrix, ra, dec)
        return ra.reshape(shape), dec.reshape(shape)

    def world_to_pixel(self, ra, dec, n_newton: int = 1):
        """(ra, dec) deg -> pixel (0-based); points off the detector get extrapolated values."""
        ra, dec = np.broadcast_arrays(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
        shape = ra.shape
        x = np.empty(ra.size)
        y = np.empty(ra.size)
        p, f = self.pointing, self._fit
        _world_to_pixel_kernel(np.ascontiguousarray(ra).ravel(), np.ascontiguousarray(dec).ravel(),
                               self._offset - _CENTER, f.fx, f.fy, self._dfx_du, self._dfx_dv,
                               self._dfy_du, self._dfy_dv, f.gx, f.gy, f.v2c, f.v3c, _V_NORM,
                               float(p.v2_ref), float(p.v3_ref), float(p.va_scale), self._matrix,
                               int(n_newton), x, y)
        return x.reshape(shape), y.reshape(shape)

    def contains(self, x, y) -> np.ndarray:
        """True where pixel coordinates fall on the science array (edges at -0.5 and size-0.5)."""
        lo, hi = -0.5, self.science_size - 0.5
        x = np.asarray(x)
        y = np.asarray(y)
        return (x >= lo) & (x < hi) & (y >= lo) & (y < hi)

    def footprint(self) -> np.ndarray:
        """(4, 2) array of (ra, dec) deg of the outer corners, counter-clockwise in pixels."""
        lo, hi = -0.5, self.science_size - 0.5
        ra, dec = self.pixel_to_world(np.array([lo, hi, hi, lo]), np.array([lo, lo, hi, hi]))
        return np.column_stack([ra, dec])


# ------------------------------------------------------------------ metadata
def s_region(detector, pointing: Pointing, science_size: int = N_PIX_SCIENCE) -> str:
    """``POLYGON ICRS ra1 dec1 … ra4 dec4`` of the detector's outer corners (deg)."""
    corners = DetectorProjection(detector, pointing, science_size).footprint()
    return polygon_s_region(corners[:, 0], corners[:, 1])


def local_pixel_scale(wcs, x, y) -> np.ndarray:
    """Local pixel scale (arcsec, square root of the pixel area) at pixel positions.

    Works with any WCS that has ``pixel_to_world_values`` (astropy WCS, gwcs).
    """
    x = np.atleast_1d(np.asarray(x, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    ra0, dec0 = wcs.pixel_to_world_values(x, y)
    ra1, dec1 = wcs.pixel_to_world_values(x + 1.0, y)
    ra2, dec2 = wcs.pixel_to_world_values(x, y + 1.0)
    cosd = np.cos(np.deg2rad(dec0))
    dx1, dy1 = ((ra1 - ra0 + 180) % 360 - 180) * cosd, dec1 - dec0
    dx2, dy2 = ((ra2 - ra0 + 180) % 360 - 180) * cosd, dec2 - dec0
    return np.sqrt(np.abs(dx1 * dy2 - dx2 * dy1)) * 3600.0


def polygon_s_region(ra, dec) -> str:
    """``POLYGON ICRS ra1 dec1 …`` (deg) of the given vertices, the ``meta.wcsinfo.s_region`` form."""
    return "POLYGON ICRS " + " ".join(f"{r:.9f} {d:.9f}" for r, d in zip(ra, dec))


def image_s_region(wcs, shape) -> str:
    """:func:`polygon_s_region` of the outer pixel corners of an image (``pixel_to_world_values`` WCS)."""
    ny, nx = shape[-2:]
    ra, dec = wcs.pixel_to_world_values(np.array([-0.5, nx - 0.5, nx - 0.5, -0.5]),
                                        np.array([-0.5, -0.5, ny - 0.5, ny - 0.5]))
    return polygon_s_region(np.asarray(ra), np.asarray(dec))


def wcsinfo_meta(detector, pointing: Pointing, science_size: int = N_PIX_SCIENCE) -> dict:
    """``meta.wcsinfo`` for one detector of an exposure at this pointing."""
    return {
        "aperture_name": pointing.aperture_name,
        "v2_ref": float(pointing.v2_ref),
        "v3_ref": float(pointing.v3_ref),
        "vparity": VPARITY,
        "v3yangle": V3_IDEAL_Y_ANGLE,
        "ra_ref": float(pointing.ra_ref),
        "dec_ref": float(pointing.dec_ref),
        "roll_ref": float(pointing.roll_ref),
        "s_region": s_region(detector, pointing, science_size),
    }


def pointing_meta(pointing: Pointing) -> dict:
    """``meta.pointing``: target at the reference point, the V1 axis on the sky and PA of V3 there."""
    ra_v1, dec_v1 = v2v3_to_world(np.array([0.0]), np.array([0.0]), replace(pointing, va_scale=1.0))
    ra_n, dec_n = v2v3_to_world(np.array([0.0]), np.array([1.0]), replace(pointing, va_scale=1.0))
    # position angle of +V3 at V1
    d1, d2 = np.radians(dec_v1[0]), np.radians(dec_n[0])
    dra = np.radians(ra_n[0] - ra_v1[0])
    pa_v3 = math.degrees(math.atan2(math.sin(dra) * math.cos(d2),
                                    math.cos(d1) * math.sin(d2) - math.sin(d1) * math.cos(d2) * math.cos(dra)))
    return {
        "target_ra": float(pointing.ra_ref),
        "target_dec": float(pointing.dec_ref),
        "target_aperture": pointing.aperture_name,
        "pa_aperture": float((pointing.roll_ref + V3_IDEAL_Y_ANGLE) % 360.0),
        "ra_v1": float(ra_v1[0]),
        "dec_v1": float(dec_v1[0]),
        "pa_v3": float(pa_v3 % 360.0),
    }


def detectors_covering(ra, dec, pointing: Pointing, science_size: int = N_PIX_SCIENCE):
    """Which detector sees each sky position.

    Returns
    -------
    str or None for scalar input; otherwise an array of detector names with
    ``''`` where no detector sees the position. The 18 detectors do not overlap.
    """
    scalar = np.ndim(ra) == 0 and np.ndim(dec) == 0
    ra_a, dec_a = np.broadcast_arrays(np.atleast_1d(np.asarray(ra, dtype=float)),
                                      np.atleast_1d(np.asarray(dec, dtype=float)))
    v2, v3 = world_to_v2v3(ra_a.ravel(), dec_a.ravel(), pointing)
    out = np.full(v2.size, "", dtype="<U5")
    half = 0.5 * science_size * 0.115 + 5.0  # arcsec; generous pre-selection radius (pixels ~0.11")
    for name in DETECTORS:
        f = _fit(name)
        near = (np.abs(v2 - f.v2c) < half * 1.5) & (np.abs(v3 - f.v3c) < half * 1.5)
        if not near.any():
            continue
        proj = DetectorProjection(name, pointing, science_size)
        idx = np.nonzero(near)[0]
        x, y = proj.v2v3_to_pixel(v2[idx], v3[idx])
        inside = proj.contains(x, y)
        out[idx[inside]] = name
    if scalar:
        return out[0] or None
    return out.reshape(ra_a.shape)
