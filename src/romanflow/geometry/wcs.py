"""The gwcs of one detector, as the official pipeline builds it, and WCS-generic helpers."""

from __future__ import annotations

import numpy as np

from romanflow.detector import N_PIX_SCIENCE
from romanflow.geometry.distortion import distortion_transform
from romanflow.geometry.pointing import Pointing


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
        default :func:`~romanflow.geometry.distortion_transform`.
    """
    from astropy import coordinates, units as u
    from astropy.modeling.models import Identity, RotationSequence3D, Scale, Shift
    from gwcs import coordinate_frames as cf
    from gwcs import geometry as gwcs_geometry
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
    tel2sky = ((Scale(1 / 3600.0) & Scale(1 / 3600.0)) | gwcs_geometry.SphericalToCartesian(wrap_lon_at=180)
               | rot | gwcs_geometry.CartesianToSpherical(wrap_lon_at=360))
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
