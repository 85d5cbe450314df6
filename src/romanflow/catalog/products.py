"""Turn L2 and L3 products (in memory or ASDF files) into :class:`BandImage` inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from romanflow.catalog.photometry import (
    local_pixel_scale,
    njy_per_pixel_from_count_rate,
    njy_per_pixel_from_surface_brightness,
)
from romanflow.catalog.source_catalog import BandImage
from romanflow.errors import InputFileError, RomanflowError
from romanflow.exposure import get_meta

_SR_PER_ARCSEC2 = (np.pi / 180.0 / 3600.0) ** 2


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
    return BandImage(
        band=str(band),
        data=np.asarray(image.data, np.float32),
        err=np.asarray(image.err, np.float32),
        wcs=image.wcs,
        njy_per_pixel=njy_per_pixel_from_count_rate(conversion, area),
        mask=mask,
        dq=np.asarray(image.dq, np.uint32),
        psf_fwhm_arcsec=psf_fwhm_arcsec,
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


def band_image_from_mosaic(model, *, psf_fwhm_arcsec=None, source: str = "mosaic") -> BandImage:
    """A :class:`BandImage` from an L3 ``MosaicModel`` (MJy/sr), open or in memory."""
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
    return BandImage(
        band=str(band),
        data=data,
        err=err,
        wcs=wcs,
        njy_per_pixel=njy_per_pixel_from_surface_brightness(scale**2 * _SR_PER_ARCSEC2),
        mask=mask,
        psf_fwhm_arcsec=psf_fwhm_arcsec,
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
        try:
            image = band_image_from_mosaic(model, psf_fwhm_arcsec=psf_fwhm_arcsec, source=str(path))
        except RomanflowError as exc:
            raise InputFileError(path, str(exc).split(": ", 1)[-1]) from None
        image.provenance["inputs"] = [path.name]
    return image
