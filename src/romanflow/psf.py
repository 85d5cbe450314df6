"""Point-spread functions of the WFI detectors from galsim.roman's optical model.

Building a PSF takes 0.1–5 s, so every function here is cached per
(detector, optical element, sampling). The PSF is monochromatic at the band's
effective wavelength, at the detector centre, with the pupil binned
``pupil_bin`` times (8 is fast and accurate to a few percent in the core).

Images are *effective* PSFs: the optical PSF convolved with the 0.11″ square
pixel, sampled ``oversample`` times per pixel. Sampling an effective PSF at
native-pixel spacing gives the fraction of a point source's flux that each
pixel collects, so a point source is rendered, and fitted, by interpolation
alone: :mod:`romanflow.kernels.epsf` evaluates these images (same centre,
sampling and units) at any sub-pixel offset.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from romanflow.detector import GALSIM_BANDS, IMAGING_FILTERS, PIXEL_SCALE, check_filter, detector_number

__all__ = ["psf_image", "psf_object", "psf_interpolated_image"]


def _band(optical_element: str) -> str:
    name = check_filter(optical_element)
    if name not in IMAGING_FILTERS:
        from romanflow.errors import RomanflowError

        raise RomanflowError(f"no imaging PSF for optical element {name}")
    return GALSIM_BANDS[name]


@lru_cache(maxsize=64)
def _optical_psf(sca: int, band: str, pupil_bin: int):
    import galsim.roman as roman

    bandpass = roman.getBandpasses(AB_zeropoint=True)[band]
    return roman.getPSF(sca, band, pupil_bin=pupil_bin, wavelength=bandpass.effective_wavelength)


def psf_object(detector, optical_element: str, *, pupil_bin: int = 8):
    """galsim object of the optical PSF (no pixel) at the detector centre, unit flux."""
    return _optical_psf(detector_number(detector), _band(optical_element), int(pupil_bin))


@lru_cache(maxsize=64)
def _psf_image_cached(sca, band, oversample, size, pupil_bin):
    import galsim

    optical = _optical_psf(sca, band, pupil_bin)
    effective = galsim.Convolve(optical, galsim.Pixel(PIXEL_SCALE))
    n = size * oversample + 1
    image = effective.drawImage(scale=PIXEL_SCALE / oversample, nx=n, ny=n, method="no_pixel")
    array = image.array.astype(np.float64) * oversample**2
    array.setflags(write=False)
    return array


def psf_image(detector, optical_element: str, *, oversample: int = 4, size: int = 32,
              pupil_bin: int = 8) -> np.ndarray:
    """Effective (pixel-convolved) PSF image of a detector in an optical element.

    Parameters
    ----------
    detector : str or int
        ``'WFI07'`` or 7.
    optical_element : str
        Imaging filter, ``'F158'`` etc.
    oversample : int
        Samples per native 0.11″ pixel.
    size : int
        Extent of the image in native pixels; the array has
        ``size * oversample + 1`` samples per side.
    pupil_bin : int
        Pupil binning of galsim.roman's model (8 fast, 1 most accurate).

    Returns
    -------
    ndarray (n, n), read-only, float64
        Fraction of a unit-flux point source collected by a native pixel whose
        centre is at that sample's offset from the source; the source is at the
        central sample ``(n - 1) / 2``. Samples taken every ``oversample`` along
        both axes sum to the flux fraction inside the image (≈1 for large sizes).
    """
    return _psf_image_cached(detector_number(detector), _band(optical_element), int(oversample),
                             int(size), int(pupil_bin))


@lru_cache(maxsize=64)
def _psf_interpolated_cached(sca, band, oversample, size, pupil_bin):
    import galsim

    array = _psf_image_cached(sca, band, oversample, size, pupil_bin) / oversample**2
    return galsim.InterpolatedImage(galsim.Image(np.ascontiguousarray(array), scale=PIXEL_SCALE / oversample),
                                    x_interpolant="lanczos3", normalization="flux")


def psf_interpolated_image(detector, optical_element: str, *, oversample: int = 4, size: int = 32,
                           pupil_bin: int = 8):
    """The effective PSF of :func:`psf_image` as a galsim ``InterpolatedImage``.

    Its flux is the fraction of light inside the image. It already includes the
    pixel, so draw what it is convolved with using ``method='no_pixel'``.
    """
    return _psf_interpolated_cached(detector_number(detector), _band(optical_element), int(oversample),
                                    int(size), int(pupil_bin))
