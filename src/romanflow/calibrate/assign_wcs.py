"""assign_wcs: attach the detector -> telescope frame -> sky transform to an L2 image.

The chain is built from the DISTORTION reference (pixel -> V2/V3 arcsec) and the
exposure's ``meta.wcsinfo`` (``ra_ref``, ``dec_ref``, ``roll_ref``, ``v2_ref``,
``v3_ref``) and ``meta.velocity_aberration.scale_factor``, exactly as
:func:`romanflow.geometry.detector_gwcs` does.
"""

from __future__ import annotations

import numpy as np

from romanflow import geometry
from romanflow.provenance import mark_step
from romanflow.detector import detector_name
from romanflow.errors import RomanflowError
from romanflow.exposure import RateImage, get_meta


def _distortion_of(distortion_model):
    """The pixel -> (V2, V3) model from a model object or a reference-file content."""
    if distortion_model is None:
        return None
    if hasattr(distortion_model, "evaluate") or hasattr(distortion_model, "n_inputs"):
        return distortion_model
    for getter in (lambda r: r["coordinate_distortion_transform"],
                   lambda r: r.coordinate_distortion_transform):
        try:
            return getter(distortion_model)
        except (KeyError, AttributeError, TypeError):
            continue
    raise RomanflowError("distortion reference has no coordinate_distortion_transform")


def _selected_distortion(image: RateImage, detector: str, science_size: int, context):
    """The DISTORTION reference the rules select for the image; an error naming the type if there is none."""
    from romanflow.formats.reference_io import read_reference
    from romanflow.refdata import select_reference

    element = get_meta(image.meta, "instrument.optical_element")
    try:
        path = select_reference("distortion", image.meta, context, science_size=science_size)
    except RomanflowError as exc:
        raise RomanflowError(f"assign_wcs: no 'distortion' reference for {detector} {element}: {exc}") from None
    if path is None:
        raise RomanflowError(f"assign_wcs: the reference rules give no 'distortion' reference for {detector} "
                             f"{element} (N/A); pass one explicitly")
    return _distortion_of(read_reference(path, "distortion"))


def assign_wcs(image: RateImage, distortion_model=None, *, context=None) -> RateImage:
    """Build the image's gwcs and record its footprint.

    Parameters
    ----------
    image : RateImage
        L2 image; its ``meta.instrument.detector`` and ``meta.wcsinfo`` pointing
        are used. Modified in place and returned.
    distortion_model : astropy model or reference content, optional
        Pixel (0-based, in the coordinates of ``image.data``) -> (V2, V3) arcsec:
        the ``coordinate_distortion_transform`` of a DISTORTION reference, or the
        reference read by :func:`romanflow.formats.reference_io.read_reference`.
        ``None`` selects the ``distortion`` reference by the reference rules
        (``context``, default the embedded store of the image's size); there is
        no silent fallback to a built-in model: no reference is an error naming
        the type.
    context : optional
        Reference rules (see :func:`romanflow.refdata.select_reference`).

    Returns
    -------
    RateImage
        With ``wcs`` set (bounding box = the array), ``meta.wcsinfo.s_region``
        and ``meta.cal_step.assign_wcs = 'COMPLETE'``.
    """
    detector = get_meta(image.meta, "instrument.detector")
    if detector is None:
        raise RomanflowError("assign_wcs: metadata has no instrument.detector")
    detector = detector_name(detector)
    ny, nx = np.shape(image.data)[-2:]
    if ny != nx:
        raise RomanflowError(f"assign_wcs: image of {detector} is {ny}x{nx}; detectors are square")
    pointing = geometry.pointing_from_meta(image.meta)
    distortion = _distortion_of(distortion_model)
    if distortion is None:
        distortion = _selected_distortion(image, detector, nx, context)
    wcs = geometry.detector_gwcs(detector, pointing, science_size=nx, distortion=distortion)

    lo, hi = -0.5, nx - 0.5
    ra, dec = wcs(np.array([lo, hi, hi, lo]), np.array([lo, lo, hi, hi]), with_bounding_box=False)
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise RomanflowError(f"assign_wcs: the distortion model of {detector} gives no sky position for the corners")
    wcsinfo = image.meta.setdefault("wcsinfo", {})
    wcsinfo["s_region"] = geometry.polygon_s_region(ra, dec)
    wcsinfo.setdefault("vparity", geometry.VPARITY)
    wcsinfo.setdefault("v3yangle", geometry.V3_IDEAL_Y_ANGLE)
    image.wcs = wcs
    mark_step(image.meta, "assign_wcs")
    return image
