"""Where the telescope points, and the rotation between the telescope frame and the sky.

The sky transform is the one the official pipeline uses: convert (V2, V3) to a
unit vector and apply ``RotationSequence3D([v2_ref, -v3_ref, roll_ref, dec_ref,
-ra_ref], 'zyxyz')`` (angles in degrees). It takes the aperture reference point
(``v2_ref``, ``v3_ref``) to (``ra_ref``, ``dec_ref``), and ``roll_ref`` is the
position angle (east of north) of the +V3 direction at that point; +V2 then lies
at ``roll_ref + 90``. An optional velocity-aberration scale multiplies
(V2 − v2_ref, V3 − v3_ref) before the rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from romanflow.errors import RomanflowError

#: (V2, V3) of the WFI_CEN aperture reference point, arcsec.
WFI_CEN_V2V3 = (1546.3846181707652, -892.7916365721071)
#: Angle of the aperture ideal Y axis from +V3 (deg); ``wcsinfo.v3yangle``.
V3_IDEAL_Y_ANGLE = -60.0
#: Parity of the ideal frame relative to (V2, V3); ``wcsinfo.vparity``.
VPARITY = -1

_ARCSEC = math.pi / (180.0 * 3600.0)


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


@lru_cache(maxsize=256)
def _rotation_matrix_cached(v2_ref, v3_ref, roll_ref, dec_ref, ra_ref):
    from astropy.modeling.models import RotationSequence3D

    rot = RotationSequence3D([v2_ref / 3600.0, -v3_ref / 3600.0, roll_ref, dec_ref, -ra_ref], axes_order="zyxyz")
    cols = rot(np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]))
    matrix = np.array(cols, dtype=float)  # matrix[:, k] = image of basis vector k
    matrix.setflags(write=False)
    return matrix


def rotation_matrix(pointing: Pointing) -> np.ndarray:
    """3x3 matrix taking telescope-frame unit vectors to ICRS unit vectors (read-only).

    Identical to ``RotationSequence3D([v2_ref, -v3_ref, roll_ref, dec_ref, -ra_ref], 'zyxyz')``.
    """
    p = pointing
    return _rotation_matrix_cached(float(p.v2_ref), float(p.v3_ref), float(p.roll_ref),
                                   float(p.dec_ref), float(p.ra_ref))


def _unit_vectors(lon, lat, *, degrees=True):
    lon = np.radians(lon) if degrees else lon
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
