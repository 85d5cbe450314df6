"""Turn L2 and L3 products (in memory or ASDF files) into :class:`BandImage` inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import re

from romanflow.catalog.photometry import (
    njy_per_pixel_from_count_rate,
    njy_per_pixel_from_surface_brightness,
    roman_psf_model,
)
from romanflow.catalog.source_catalog import BandImage
from romanflow.errors import InputFileError, RomanflowError
from romanflow.exposure import get_meta
from romanflow.geometry import local_pixel_scale

_SR_PER_ARCSEC2 = (np.pi / 180.0 / 3600.0) ** 2


_DETECTOR_IN_NAME = re.compile(r"_(wfi\d\d)_", re.IGNORECASE)


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


def member_paths(path: Path, members) -> list[Path] | None:
    """The mosaic's member L2 files, looked for beside it (same folder, then ``../registered``,
    then ``../l2``); None when any is missing."""
    path = Path(path)
    found = []
    for name in members:
        hit = next((d / name for d in (path.parent, path.parent.parent / "registered", path.parent.parent / "l2")
                    if (d / name).is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found or None


def _member_orientations(model, paths):
    """(detectors, matrices, native pixel scales in arcsec) of the mosaic's member files;
    None when any is unreadable."""
    import roman_datamodels as rdm

    ny, nx = model.data.shape
    detectors, matrices, scales = [], [], []
    for found in paths:
        match = _DETECTOR_IN_NAME.search(found.name)
        if match is None:
            return None
        try:
            with rdm.open(found) as member:
                matrices.append(detector_to_image_matrix(member.meta.wcs, model.meta.wcs, nx / 2.0, ny / 2.0))
                my, mx = (v / 2.0 for v in member.data.shape)
                scales.append(float(local_pixel_scale(member.meta.wcs, [mx], [my])[0]))
        except Exception:  # noqa: BLE001 - an unreadable member leaves the orientation unknown
            return None
        detectors.append(match.group(1).upper())
    return (detectors, matrices, scales) if detectors else None


def _roman_psf(detectors, band, scale, drop_size_arcsec, detector_to_image=None, native_scales=None):
    """(model, FWHM arcsec) of the galsim.roman PSF, or (None, None) when the band or detectors are unknown."""
    from romanflow.detector import IMAGING_FILTERS, check_filter

    try:
        if not detectors or check_filter(str(band)) not in IMAGING_FILTERS:
            return None, None
        if detector_to_image is None:
            model, fwhm_pix = roman_psf_model(sorted(set(detectors)), str(band), scale,
                                              drop_size_arcsec=drop_size_arcsec, native_scale_arcsec=native_scales)
        else:
            model, fwhm_pix = roman_psf_model(list(detectors), str(band), scale, drop_size_arcsec=drop_size_arcsec,
                                              detector_to_image=list(detector_to_image),
                                              native_scale_arcsec=native_scales)
    except RomanflowError:
        return None, None
    return model, fwhm_pix * scale


def _valid(value) -> bool:
    return value is not None and not (isinstance(value, (int, float)) and value == -999999)


def band_image_from_rate_image(image, *, psf_fwhm_arcsec=None, source: str = "L2 image") -> BandImage:
    """A :class:`BandImage` from an L2 :class:`~romanflow.exposure.RateImage` (DN/s).

    The conversion uses ``meta.photometry.conversion_megajanskys`` (MJy/sr per
    DN/s) and ``meta.photometry.pixel_area`` (sr; from the WCS when missing).
    """
    from romanflow import dq as dqbits

    if image.wcs is None:
        raise RomanflowError(f"{source}: no WCS (meta.wcs is null); run assign_wcs first")
    conversion = get_meta(image.meta, "photometry.conversion_megajanskys")
    if not _valid(conversion):
        raise RomanflowError(f"{source}: meta.photometry.conversion_megajanskys is missing; run photom first")
    area = get_meta(image.meta, "photometry.pixel_area")
    ny, nx = image.data.shape
    if not _valid(area):
        area = float(local_pixel_scale(image.wcs, [nx / 2], [ny / 2])[0]) ** 2 * _SR_PER_ARCSEC2
    band = get_meta(image.meta, "instrument.optical_element")
    mask = (np.asarray(image.dq) & dqbits.DO_NOT_USE) != 0
    psf_model = None
    if psf_fwhm_arcsec is None:
        scale = float(local_pixel_scale(image.wcs, [nx / 2], [ny / 2])[0])
        detector = get_meta(image.meta, "instrument.detector")
        # an image in detector pixels: the PSF in pixel units, whatever the local sky scale
        psf_model, psf_fwhm_arcsec = _roman_psf([detector] if _valid(detector) else [], band, scale, None,
                                                native_scales=scale)
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


def band_image_from_mosaic(model, *, psf_fwhm_arcsec=None, source: str = "mosaic",
                           member_orientations=None) -> BandImage:
    """A :class:`BandImage` from an L3 ``MosaicModel`` (MJy/sr), open or in memory.

    ``member_orientations``: ``(detectors, matrices, native_scales)``, the
    detector of each member, its orientation on the mosaic grid
    (:func:`detector_to_image_matrix`) and its local pixel scale (arcsec); the
    PSF model is then built in the mosaic's axes. Without it the PSF is
    modelled in detector axes at the nominal pixel scale.
    """
    wcs = model.meta.wcs if "wcs" in model.meta else None
    if wcs is None:
        raise RomanflowError(f"{source}: the mosaic has no WCS (meta.wcs)")
    data = np.asarray(model.data, np.float32)
    err = np.asarray(model.err, np.float32)
    ny, nx = data.shape
    scale = float(local_pixel_scale(wcs, [nx / 2], [ny / 2])[0])
    weight = np.asarray(model.weight) if "weight" in model else None
    mask = ~np.isfinite(data) | ~np.isfinite(err) | (err <= 0)
    if weight is not None:
        mask |= weight <= 0
    band = model.meta.instrument.optical_element
    members = []
    try:
        members = [str(m) for m in model.meta.resample.members]
    except Exception:  # noqa: BLE001 - optional metadata
        pass
    psf_model = None
    if psf_fwhm_arcsec is None:
        from romanflow.detector import PIXEL_SCALE

        try:
            pixfrac = float(model.meta.resample.pixfrac)
        except Exception:  # noqa: BLE001 - optional metadata
            pixfrac = 1.0
        if member_orientations is not None:
            detectors, matrices, native_scales = member_orientations
        else:
            detectors = [m.group(1).upper() for m in map(_DETECTOR_IN_NAME.search, members) if m]
            matrices, native_scales = None, None
        psf_model, psf_fwhm_arcsec = _roman_psf(detectors, band, scale, PIXEL_SCALE * pixfrac, matrices,
                                                native_scales)
    return BandImage(
        band=str(band),
        data=data,
        err=err,
        wcs=wcs,
        njy_per_pixel=njy_per_pixel_from_surface_brightness(scale**2 * _SR_PER_ARCSEC2),
        mask=mask,
        psf_fwhm_arcsec=psf_fwhm_arcsec,
        psf_model=psf_model,
        provenance={"inputs": [str(model.meta.filename)], "members": members},
    )


def read_band_image(path, *, psf_fwhm_arcsec=None) -> BandImage:
    """Read an L2 ``ImageModel`` or L3 ``MosaicModel`` ASDF file as a :class:`BandImage`."""
    from romanflow.formats import open_model, read_l2

    path = Path(path)
    model = open_model(path, ("ImageModel", "MosaicModel"))
    kind = type(model).__name__
    if kind == "ImageModel":
        model.close()
        try:
            return band_image_from_rate_image(read_l2(path), psf_fwhm_arcsec=psf_fwhm_arcsec, source=str(path))
        except RomanflowError as exc:
            raise InputFileError(path, str(exc).split(": ", 1)[-1]) from None
    with model:
        orientations = None
        try:
            members = [str(m) for m in model.meta.resample.members]
        except Exception:  # noqa: BLE001 - optional metadata
            members = []
        exposures = member_paths(path, members) or []
        if psf_fwhm_arcsec is None and exposures:
            orientations = _member_orientations(model, exposures)
        try:
            image = band_image_from_mosaic(model, psf_fwhm_arcsec=psf_fwhm_arcsec, source=str(path),
                                           member_orientations=orientations)
        except RomanflowError as exc:
            raise InputFileError(path, str(exc).split(": ", 1)[-1]) from None
        image.provenance["inputs"] = [path.name]
        image.exposures = exposures
    return image
