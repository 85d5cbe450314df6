"""Direct PSFs from galsim.roman's optical model (slow; the library and the simulator build on it).

Every image here follows the conventions of :mod:`romanflow.psf`: a square
array of ``n`` samples per side, ``oversample`` samples per native 0.11″
pixel, the source at array coordinate ``((n - 1) / 2, (n - 1) / 2)`` (the
central sample for odd ``n``, the corner shared by the four central samples
for even ``n``), values in *fraction of the source's flux per native-pixel
area*. Pixel-convolved images are effective PSFs (optics ⊗ the pixel's
square response; no inter-pixel capacitance): their samples taken every
``oversample`` sum to the flux fraction inside the image.

Positions are 0-based science pixels of the full 4088² detector. galsim.roman
interpolates its aberrations across the detector, so the PSF varies with
position; ``pupil_bin`` bins its pupil plane (8: fast; 4: finer).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from romanflow.detector import PIXEL_SCALE
from romanflow.psf.spectra import band_name, photon_weights

__all__ = ["optical_psf", "monochromatic_stack", "broadband_image"]


@lru_cache(maxsize=16)  # each holds tens of MB of galsim tables
def optical_psf(sca: int, band: str, x: float, y: float, wavelength: float, pupil_bin: int):
    """galsim object of the optical PSF (unit flux, no pixel) at a detector position and wavelength (nm)."""
    import galsim
    import galsim.roman as roman

    # galsim.roman's SCA positions are 1-based pixels
    return roman.getPSF(int(sca), band, SCA_pos=galsim.PositionD(float(x) + 1.0, float(y) + 1.0),
                        pupil_bin=int(pupil_bin), wavelength=float(wavelength))


def monochromatic_stack(sca: int, optical_element: str, x: float, y: float, wavelengths, *, oversample: int,
                        size: int, pupil_bin: int = 8, pixel_convolved: bool = True,
                        jitter_mas: float = 0.0) -> np.ndarray:
    """Images of the PSF at each wavelength (nm): ``(n_wavelengths, size, size)`` float64, module conventions.

    ``jitter_mas`` is the RMS pointing jitter per axis (mas), a Gaussian blur.
    """
    import galsim

    band = band_name(optical_element)
    scale = PIXEL_SCALE / oversample
    extra = []
    if pixel_convolved:
        extra.append(galsim.Pixel(PIXEL_SCALE))
    if jitter_mas and jitter_mas > 0:
        extra.append(galsim.Gaussian(sigma=float(jitter_mas) / 1000.0))
    out = np.empty((len(wavelengths), size, size))
    for k, lam in enumerate(wavelengths):
        obj = optical_psf(int(sca), band, round(float(x), 3), round(float(y), 3), float(lam), int(pupil_bin))
        if extra:
            obj = galsim.Convolve([obj] + extra)
        image = obj.drawImage(scale=scale, nx=size, ny=size, method="no_pixel")
        out[k] = image.array * oversample**2
    return out


def broadband_image(sca: int, optical_element: str, x: float, y: float, *, spectrum=None, n_wavelengths: int = 8,
                    oversample: int, size: int, pupil_bin: int = 8, pixel_convolved: bool = True,
                    jitter_mas: float = 0.0) -> np.ndarray:
    """Broadband PSF image: monochromatic images at the sub-band centres weighted by the spectrum's photons."""
    wavelengths, weights = photon_weights(optical_element, spectrum, n_wavelengths)
    stack = monochromatic_stack(sca, optical_element, x, y, wavelengths, oversample=oversample, size=size,
                                pupil_bin=pupil_bin, pixel_convolved=pixel_convolved, jitter_mas=jitter_mas)
    return np.tensordot(weights, stack, axes=1)
