"""Exposure metadata from the geometry: ``meta.wcsinfo``, ``meta.pointing`` and S_REGION polygons."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from romanflow.detector import N_PIX_SCIENCE
from romanflow.geometry.pointing import V3_IDEAL_Y_ANGLE, VPARITY, Pointing, v2v3_to_world
from romanflow.geometry.projection import DetectorProjection


def polygon_s_region(ra, dec) -> str:
    """``POLYGON ICRS ra1 dec1 …`` (deg) of the given vertices, the ``meta.wcsinfo.s_region`` form."""
    return "POLYGON ICRS " + " ".join(f"{r:.9f} {d:.9f}" for r, d in zip(ra, dec))


def s_region(detector, pointing: Pointing, science_size: int = N_PIX_SCIENCE) -> str:
    """``POLYGON ICRS ra1 dec1 … ra4 dec4`` of the detector's outer corners (deg)."""
    corners = DetectorProjection(detector, pointing, science_size).footprint()
    return polygon_s_region(corners[:, 0], corners[:, 1])


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
    """``meta.pointing``: target at the reference point, the V1 axis on the sky and PA of V3 there (deg)."""
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
