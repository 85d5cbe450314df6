"""One band's image as the catalog measures it: arrays, WCS, photometric constant, PSF and provenance."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np


@dataclass
class BandImage:
    """One band's image ready for cataloguing.

    Attributes
    ----------
    band : str
        Filter name (``'F158'``).
    data, err : ndarray (ny, nx)
        Image and its 1-sigma error in native units (DN/s or MJy/sr).
    wcs : object
        Pixel-to-sky transform with ``pixel_to_world_values`` (astropy WCS or gwcs).
    njy_per_pixel : float
        Factor from a native pixel value to nJy in that pixel.
    mask : ndarray of bool, optional
        Pixels not to use.
    dq : ndarray of uint32, optional
        Data-quality flags (L2), OR-ed into ``image_flags``.
    psf_fwhm_arcsec : float, optional
        PSF FWHM; estimated from the image when not given.
    psf_model : photutils PSF model, optional
        Unit-flux PSF in this image's pixels; a Gaussian of ``psf_fwhm_arcsec`` otherwise.
    provenance : dict
        Input file names, reference files, etc.
    mosaic_psf : MosaicPSF, optional
        For a mosaic whose members are all known: its own PSF at any position
        (:class:`romanflow.catalog.mosaic_psf.MosaicPSF`), which the PSF fluxes on it use.
    exposures : list
        For a mosaic: its calibrated member exposures (L2 paths or BandImages), on
        which point sources are also PSF-fitted (:mod:`romanflow.catalog.exposure_photometry`).
    fallbacks : list of str
        Every substitute used in place of what the product should have given (a
        member exposure not found, a Gaussian PSF, an unknown orientation), one
        sentence each; the catalog's metadata carries them on.
    """

    band: str
    data: np.ndarray
    err: np.ndarray
    wcs: object
    njy_per_pixel: float
    mask: np.ndarray | None = None
    dq: np.ndarray | None = None
    psf_fwhm_arcsec: float | None = None
    psf_model: object = None
    provenance: dict = field(default_factory=dict)
    mosaic_psf: object = None
    exposures: list = field(default_factory=list)
    fallbacks: list = field(default_factory=list)


def record_fallback(fallbacks: list, message: str, logger: logging.Logger) -> None:
    """Append ``message`` to ``fallbacks`` (once) and log it as a warning."""
    if message not in fallbacks:
        fallbacks.append(message)
        logger.warning(message)
