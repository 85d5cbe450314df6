"""Turn L2 and L3 products (in memory or ASDF files) into :class:`BandImage` inputs.

A mosaic's calibrated exposures are the files its ``meta.resample.members``
names, relative to the mosaic's folder (or absolute). Each member's detector,
orientation on the mosaic grid and pixel scale come from its own metadata and
WCS. Whatever cannot be found or read is logged and recorded in the image's
``fallbacks``, and the catalog carries that record on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from romanflow.catalog.band_image import BandImage, record_fallback
from romanflow.catalog.photometry import (
    njy_per_pixel_from_count_rate,
    njy_per_pixel_from_surface_brightness,
    roman_psf_model,
)
from romanflow.catalog.schema import band_token
from romanflow.errors import InputFileError, ParameterError, RomanflowError
from romanflow.exposure import get_meta
from romanflow.geometry import local_pixel_scale

_log = logging.getLogger(__name__)

_SR_PER_ARCSEC2 = (np.pi / 180.0 / 3600.0) ** 2


def detector_to_image_matrix(detector_wcs, image_wcs, x, y) -> np.ndarray:
    """Orientation of a detector's pixel axes on an image grid, at image pixel (x, y).

    Returns the 2×2 Jacobian d(x_img, y_img)/d(x_det, y_det) normalised to unit
    determinant magnitude: a rotation, with a parity flip when the determinant
    is negative (arcsec per arcsec, see
    :func:`romanflow.catalog.photometry.resampled_effective_psf`).
    """
    xs = np.array([x, x + 1.0, x], np.float64)
    ys = np.array([y, y, y + 1.0], np.float64)
    ra, dec = image_wcs.pixel_to_world_values(xs, ys)
    dx, dy = (np.asarray(v, np.float64) for v in detector_wcs.world_to_pixel_values(ra, dec))
    image_to_detector = np.array([[dx[1] - dx[0], dx[2] - dx[0]], [dy[1] - dy[0], dy[2] - dy[0]]])
    if not np.all(np.isfinite(image_to_detector)):
        raise RomanflowError(f"image pixel ({x:.0f}, {y:.0f}) has no position on the detector")
    matrix = np.linalg.inv(image_to_detector)
    return matrix / np.sqrt(abs(np.linalg.det(matrix)))


def mosaic_members(model) -> list[str]:
    """The member references an L3 model records (``meta.resample.members``); empty when absent."""
    try:
        return [str(m) for m in model.meta.resample.members]
    except (KeyError, AttributeError):
        return []


def locate_members(mosaic_path, members) -> tuple[list[Path], list[str]]:
    """(found files, missing references) of a mosaic's members.

    Each reference is a path relative to the mosaic's folder, or absolute
    (:func:`romanflow.mosaic.resample.member_references`).
    """
    folder = Path(mosaic_path).parent
    found, missing = [], []
    for reference in members:
        candidate = folder / reference  # an absolute reference stays as it is
        if candidate.is_file():
            found.append(candidate)
        else:
            missing.append(str(reference))
    return found, missing


@dataclass
class MemberGeometry:
    """What the PSF model of a mosaic needs from one member exposure."""

    path: Path
    detector: str | None  # meta.instrument.detector; None when absent
    detector_to_mosaic: np.ndarray | None  # detector_to_image_matrix; None when unknown
    native_scale_arcsec: float | None  # local pixel scale at the member's centre
    wcs: object = None  # the member's own pixel -> sky (meta.wcs)
    shape: tuple | None = None  # science array shape
    var_rnoise: float | None = None  # median read-noise variance ((DN/s)², the ivm weight)
    exposure_time: float | None = None  # s (the exptime weight)
    bad: np.ndarray | None = None  # pixels the mosaic leaves out (DO_NOT_USE), science array shape


def member_geometry(member_path, mosaic_wcs, mosaic_shape) -> MemberGeometry:
    """Detector, orientation on the mosaic grid and pixel scale of one member file.

    The orientation is taken at the member's centre, or at the mosaic's centre
    when the member's centre is off the mosaic grid.
    """
    from romanflow.formats import open_model

    with open_model(member_path, ("ImageModel",)) as member:
        try:
            detector = str(member.meta.instrument.detector)
        except (KeyError, AttributeError):
            detector = None
        wcs = member.meta.wcs if "wcs" in member.meta else None
        if wcs is None:
            return MemberGeometry(Path(member_path), detector, None, None)
        shape = tuple(int(v) for v in member.data.shape)
        try:
            var_rnoise = float(np.nanmedian(np.asarray(member.var_rnoise, np.float64)))
        except (KeyError, AttributeError, ValueError, OSError):
            var_rnoise = None
        try:
            exposure_time = float(member.meta.exposure.exposure_time)
        except (KeyError, AttributeError, TypeError, ValueError):
            exposure_time = None
        try:
            from romanflow import dq as dqbits

            bad = (np.asarray(member.dq, np.uint32) & np.uint32(dqbits.DO_NOT_USE)) != 0
            bad = bad if bad.shape == shape else None
        except (KeyError, AttributeError, ValueError, OSError):
            bad = None
        my, mx = ((v - 1) / 2.0 for v in member.data.shape)
        scale = float(local_pixel_scale(wcs, [mx], [my])[0])
        ny, nx = mosaic_shape
        ra, dec = wcs.pixel_to_world_values(mx, my)
        x, y = (float(v) for v in mosaic_wcs.world_to_pixel_values(ra, dec))
        matrix = None
        for px, py in ((x, y), (nx / 2.0, ny / 2.0)):
            if not (np.isfinite(px) and np.isfinite(py)):
                continue
            try:
                matrix = detector_to_image_matrix(wcs, mosaic_wcs, px, py)
                break
            except RomanflowError:
                continue
    return MemberGeometry(Path(member_path), detector, matrix, scale, wcs, shape,
                          var_rnoise if var_rnoise is not None and np.isfinite(var_rnoise) else None,
                          exposure_time if exposure_time is not None and np.isfinite(exposure_time) else None,
                          bad)


def _mosaic_psf(model, members, band, wcs):
    """(:class:`MosaicPSF`, None) of a mosaic whose every member is known, or (None, why not)."""
    from romanflow.catalog.mosaic_psf import MosaicMember, MosaicPSF

    if not members:
        return None, "no member exposure found"
    try:
        weight_type = str(model.meta.resample.weight_type)
    except (KeyError, AttributeError):
        weight_type = "ivm"
    try:
        pointings = int(model.meta.resample.pointings)
    except (KeyError, AttributeError, TypeError, ValueError):
        pointings = None
    if pointings is not None and pointings != len(members):
        return None, f"{len(members)} of the {pointings} member exposures found"
    lacking = [m.path.name for m in members if m.detector is None or m.wcs is None or m.shape is None
               or (weight_type == "ivm" and m.var_rnoise is None)
               or (weight_type == "exptime" and m.exposure_time is None)]
    if lacking:
        return None, f"no detector, WCS or weight for {', '.join(lacking)}"
    pixfrac = _pixfrac(model)
    return MosaicPSF([MosaicMember(m.detector, m.wcs, m.shape, m.var_rnoise or 1.0, m.exposure_time or 1.0, m.bad)
                      for m in members], wcs, str(band), pixfrac=1.0 if pixfrac is None else pixfrac,
                     weight_type=weight_type), None


def _roman_psf(detectors, band, scale, drop_size_arcsec, detector_to_image=None, native_scales=None):
    """(model, FWHM arcsec, None) of the galsim.roman PSF, or (None, None, why not)."""
    from romanflow.detector import IMAGING_FILTERS, check_filter

    if not detectors:
        return None, None, "the detector is not known"
    try:
        if check_filter(str(band)) not in IMAGING_FILTERS:
            return None, None, f"{band} is not an imaging filter"
        if detector_to_image is None:
            model, fwhm_pix = roman_psf_model(sorted(set(detectors)), str(band), scale,
                                              drop_size_arcsec=drop_size_arcsec, native_scale_arcsec=native_scales)
        else:
            model, fwhm_pix = roman_psf_model(list(detectors), str(band), scale, drop_size_arcsec=drop_size_arcsec,
                                              detector_to_image=list(detector_to_image),
                                              native_scale_arcsec=native_scales)
    except RomanflowError as exc:
        return None, None, str(exc)
    return model, fwhm_pix * scale, None


def _valid(value) -> bool:
    return value is not None and not (isinstance(value, (int, float)) and value == -999999)


def band_image_from_rate_image(image, *, psf_fwhm_arcsec=None, source: str = "L2 image") -> BandImage:
    """A :class:`BandImage` from an L2 :class:`~romanflow.exposure.RateImage` (DN/s).

    The conversion uses ``meta.photometry.conversion_megajanskys`` (MJy/sr per
    DN/s) and ``meta.photometry.pixel_area`` (sr; from the WCS when missing).
    The PSF model is galsim.roman's for ``meta.instrument.detector``.
    """
    from romanflow import dq as dqbits

    if image.wcs is None:
        raise RomanflowError(f"{source}: no WCS (meta.wcs is null); run assign_wcs first")
    if not hasattr(image.wcs, "pixel_to_world_values"):
        raise RomanflowError(f"{source}: meta.wcs is not a WCS ({type(image.wcs).__name__})")
    conversion = get_meta(image.meta, "photometry.conversion_megajanskys")
    if not _valid(conversion):
        raise RomanflowError(f"{source}: meta.photometry.conversion_megajanskys is missing; run photom first")
    area = get_meta(image.meta, "photometry.pixel_area")
    ny, nx = image.data.shape
    if not _valid(area):
        area = float(local_pixel_scale(image.wcs, [nx / 2], [ny / 2])[0]) ** 2 * _SR_PER_ARCSEC2
    band = get_meta(image.meta, "instrument.optical_element")
    mask = (np.asarray(image.dq) & dqbits.DO_NOT_USE) != 0
    psf_model, fallbacks = None, []
    if psf_fwhm_arcsec is None:
        scale = float(local_pixel_scale(image.wcs, [nx / 2], [ny / 2])[0])
        detector = get_meta(image.meta, "instrument.detector")
        # an image in detector pixels: the PSF in pixel units, whatever the local sky scale
        psf_model, psf_fwhm_arcsec, problem = _roman_psf([detector] if _valid(detector) else [], band, scale, None,
                                                         native_scales=scale)
        if psf_model is None:
            record_fallback(fallbacks, f"{source}: no Roman PSF model ({problem})", _log)
    return BandImage(
        band=str(band),
        data=np.asarray(image.data, np.float32),
        err=np.asarray(image.err, np.float32),
        wcs=image.wcs,
        njy_per_pixel=njy_per_pixel_from_count_rate(conversion, area),
        mask=mask,
        dq=np.asarray(image.dq, np.uint32),
        psf_fwhm_arcsec=psf_fwhm_arcsec,
        psf_model=psf_model,
        provenance={"inputs": [get_meta(image.meta, "filename", source)],
                    "reference_files": _ref_files(image.meta)},
        fallbacks=fallbacks,
    )


def _ref_files(meta) -> dict:
    refs = get_meta(meta, "ref_file", {}) or {}
    out = {}
    for key, value in refs.items():
        if isinstance(value, dict):
            value = value.get("name", value)
        if isinstance(value, str) and value not in ("", "N/A", "?"):
            out[key] = value
    return out


def _pixfrac(model):
    """``meta.resample.pixfrac``, or None when absent."""
    try:
        value = model.meta.resample.pixfrac
    except (KeyError, AttributeError):
        return None
    return float(value) if _valid(value) and 0 < float(value) <= 1 else None


def band_image_from_mosaic(model, *, psf_fwhm_arcsec=None, source: str = "mosaic", members=None) -> BandImage:
    """A :class:`BandImage` from an L3 ``MosaicModel`` (MJy/sr), open or in memory.

    ``members``: :class:`MemberGeometry` of the member exposures found. The PSF
    model is built in the mosaic's axes from their detectors and orientations;
    in detector axes when an orientation is unknown; a Gaussian (estimated
    FWHM) when no detector is known. Each substitute is recorded in the
    image's ``fallbacks``.
    """
    from romanflow.detector import PIXEL_SCALE

    wcs = model.meta.wcs if "wcs" in model.meta else None
    if wcs is None:
        raise RomanflowError(f"{source}: the mosaic has no WCS (meta.wcs)")
    if not hasattr(wcs, "pixel_to_world_values"):
        raise RomanflowError(f"{source}: meta.wcs is not a WCS ({type(wcs).__name__})")
    data = np.asarray(model.data, np.float32)
    err = np.asarray(model.err, np.float32)
    ny, nx = data.shape
    scale = float(local_pixel_scale(wcs, [nx / 2], [ny / 2])[0])
    weight = np.asarray(model.weight) if "weight" in model else None
    mask = ~np.isfinite(data) | ~np.isfinite(err) | (err <= 0)
    if weight is not None:
        mask |= weight <= 0
    band = model.meta.instrument.optical_element
    psf_model, mosaic_psf, fallbacks = None, None, []
    if psf_fwhm_arcsec is None:
        members = list(members or [])
        pixfrac = _pixfrac(model)
        if pixfrac is None:
            pixfrac = 1.0
            record_fallback(fallbacks, f"{source}: meta.resample.pixfrac absent; the PSF model assumes pixfrac 1", _log)
        no_detector = [str(m.path) for m in members if m.detector is None]
        if no_detector:
            record_fallback(fallbacks, f"{source}: no meta.instrument.detector in {', '.join(no_detector)}; "
                                       "the PSF model leaves them out", _log)
        known = [m for m in members if m.detector is not None]
        detectors = [m.detector for m in known]
        matrices = [m.detector_to_mosaic for m in known]
        scales = [m.native_scale_arcsec for m in known]
        if any(m is None for m in matrices):
            unknown = [str(m.path) for m in known if m.detector_to_mosaic is None]
            record_fallback(fallbacks, f"{source}: orientation on the mosaic unknown for {', '.join(unknown)}; "
                                       "the PSF model is in detector axes", _log)
            matrices = None
        if any(s is None for s in scales):
            scales = None
        elif matrices is None and scales:
            scales = float(np.median(scales))  # one model per detector: one scale for all
        psf_model, psf_fwhm_arcsec, problem = _roman_psf(detectors, band, scale, PIXEL_SCALE * pixfrac, matrices,
                                                         scales)
        if psf_model is None:
            record_fallback(fallbacks, f"{source}: no Roman PSF model ({problem})", _log)
        else:
            mosaic_psf, problem = _mosaic_psf(model, members, band, wcs)
            if mosaic_psf is None:
                record_fallback(fallbacks, f"{source}: psf_{band_token(str(band))} fluxes from the mean PSF, not the "
                                           f"mosaic's own ({problem})", _log)
    return BandImage(
        band=str(band),
        data=data,
        err=err,
        wcs=wcs,
        njy_per_pixel=njy_per_pixel_from_surface_brightness(scale**2 * _SR_PER_ARCSEC2),
        mask=mask,
        psf_fwhm_arcsec=psf_fwhm_arcsec,
        psf_model=psf_model,
        mosaic_psf=mosaic_psf,
        provenance={"inputs": [str(model.meta.filename)], "members": mosaic_members(model)},
        fallbacks=fallbacks,
    )


def read_band_image(path, *, psf_fwhm_arcsec=None) -> BandImage:
    """Read an L2 ``ImageModel`` or L3 ``MosaicModel`` ASDF file as a :class:`BandImage`.

    A mosaic's member exposures (``meta.resample.members``) become the image's
    ``exposures``; each one not found or not readable is logged as a warning
    and recorded in its ``fallbacks``.
    """
    from romanflow.formats import open_model, read_l2

    path = Path(path)
    if psf_fwhm_arcsec is not None and not (np.isfinite(psf_fwhm_arcsec) and psf_fwhm_arcsec > 0):
        raise ParameterError("psf_fwhm_arcsec", psf_fwhm_arcsec, "must be a finite number > 0 (arcsec)")
    model = open_model(path, ("ImageModel", "MosaicModel"))
    kind = type(model).__name__
    try:
        shapes = {name: tuple(model[name].shape) for name in ("data", "err") if name in model}
    except Exception as exc:  # noqa: BLE001 - asdf raises many kinds for a damaged array header: name the file
        model.close()
        raise InputFileError(path, f"arrays cannot be read (truncated or corrupt?): {exc}") from None
    problem = next((f"{name} has shape {shape}: expected a 2-D image (ny, nx)"
                    for name, shape in shapes.items() if len(shape) != 2), None)
    if problem is None and len(set(shapes.values())) > 1:
        problem = f"data {shapes['data']} and err {shapes['err']} differ in shape"
    if problem is not None:
        model.close()
        raise InputFileError(path, problem)
    if kind == "ImageModel":
        model.close()
        try:
            return band_image_from_rate_image(read_l2(path), psf_fwhm_arcsec=psf_fwhm_arcsec, source=str(path))
        except RomanflowError as exc:
            raise InputFileError(path, str(exc).split(": ", 1)[-1]) from None
    with model:
        members = mosaic_members(model)
        found, missing = locate_members(path, members)
        fallbacks = []
        for reference in missing:
            record_fallback(fallbacks, f"{path}: member exposure {reference} not found (looked for "
                                       f"{path.parent / reference}); psf_exp_{_band_token_of(model)} comes from "
                                       f"the other {len(found)} of {len(members)} exposures", _log)
        wcs = model.meta.wcs if "wcs" in model.meta else None
        geometries = []
        if psf_fwhm_arcsec is None and wcs is not None:
            for member in found:
                try:
                    geometries.append(member_geometry(member, wcs, model.data.shape))
                except InputFileError as exc:
                    record_fallback(fallbacks, f"{path}: member exposure unreadable ({exc}); it is left out", _log)
            found = [g.path for g in geometries]
        try:
            image = band_image_from_mosaic(model, psf_fwhm_arcsec=psf_fwhm_arcsec, source=str(path),
                                           members=geometries)
        except RomanflowError as exc:
            raise InputFileError(path, str(exc).split(": ", 1)[-1]) from None
        except (OSError, ValueError, EOFError) as exc:  # a block cut short or corrupt, read only now
            raise InputFileError(path, f"arrays cannot be read (truncated or corrupt?): {exc}") from None
        image.provenance["inputs"] = [path.name]
        image.exposures = found
        image.fallbacks = fallbacks + [f for f in image.fallbacks if f not in fallbacks]
    return image


def _band_token_of(model) -> str:
    """Column-name token of a product's filter (``f158``), for messages."""
    try:
        return band_token(str(model.meta.instrument.optical_element))
    except (KeyError, AttributeError):
        return "<band>"
