"""Focal-plane geometry of the Wide Field Instrument: pixels to the telescope frame to the sky.

This package is the single source of the WFI geometry. The simulator takes its
true WCS from here, the reference synthesizer writes :func:`distortion_transform`
into the distortion reference file, assign_wcs rebuilds the same chain from that
file and the exposure metadata, and the mosaic uses :class:`DetectorProjection`
for fast pixel maps.

Modules
-------
``pointing``     :class:`Pointing`, the telescope-frame <-> sky rotation
``distortion``   per-detector pixel <-> (V2, V3) polynomials, read from the shipped coefficients
``galsim_fit``   deriving those coefficients from galsim.roman (build time: not imported here)
``wcs``          the gwcs of one detector, :func:`local_pixel_scale`
``projection``   :class:`DetectorProjection` (fast numba path), :func:`detectors_covering`
``metadata``     ``meta.wcsinfo``, ``meta.pointing``, S_REGION polygons

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
"""

from romanflow.geometry.distortion import (
    DISTORTION_PATH,
    INVERSE_DEGREE,
    POLY_DEGREE,
    DetectorDistortion,
    detector_center_v2v3,
    detector_distortion,
    distortion_table,
    distortion_transform,
    fit_rms_mas,
    patch_offset,
    read_distortion_file,
)
from romanflow.geometry.metadata import image_s_region, pointing_meta, polygon_s_region, s_region, wcsinfo_meta
from romanflow.geometry.pointing import (
    V3_IDEAL_Y_ANGLE,
    VPARITY,
    WFI_CEN_V2V3,
    Pointing,
    pointing_for,
    pointing_from_meta,
    rotation_matrix,
    v2v3_to_world,
    world_to_v2v3,
)
from romanflow.geometry.projection import DetectorProjection, detectors_covering
from romanflow.geometry.wcs import detector_gwcs, local_pixel_scale

__all__ = [
    "WFI_CEN_V2V3",
    "V3_IDEAL_Y_ANGLE",
    "VPARITY",
    "POLY_DEGREE",
    "INVERSE_DEGREE",
    "DISTORTION_PATH",
    "Pointing",
    "pointing_for",
    "pointing_from_meta",
    "pointing_meta",
    "DetectorDistortion",
    "detector_distortion",
    "distortion_table",
    "read_distortion_file",
    "patch_offset",
    "distortion_transform",
    "detector_gwcs",
    "DetectorProjection",
    "wcsinfo_meta",
    "s_region",
    "polygon_s_region",
    "image_s_region",
    "local_pixel_scale",
    "detectors_covering",
    "detector_center_v2v3",
    "fit_rms_mas",
    "rotation_matrix",
    "v2v3_to_world",
    "world_to_v2v3",
]
