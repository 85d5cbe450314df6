"""Rendering sources into a detector's ideal count-rate image.

Each source is drawn as a postage stamp of the PSF *core* (the effective PSF
within ±:data:`CORE_HALF` pixels of the source's nearest pixel); the PSF
*wings* beyond the core, where the light of every source has the same shape,
are added for all sources at once by one FFT convolution of a map of the
source fluxes with the wing kernel. Core plus wings carry the full flux of
every source (up to the :data:`WING_SIZE` box, ±14″), at a cost nearly
independent of the source brightness.

* Stars: the oversampled effective PSF interpolated at each pixel
  (:mod:`romanflow.kernels.epsf`, Keys cubic).
* Galaxies: galsim Sersic / de Vaucouleurs + exponential profiles, sheared to
  their axis ratio and position angle, convolved with the effective-PSF core
  and drawn with ``method='no_pixel'`` (the effective PSF includes the pixel).

Units: positions in 0-based science pixels; fluxes and images in e-/s.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from romanflow.kernels.epsf import add_point_source
from romanflow.psf import psf_image, psf_interpolated_image

#: Half-size of the PSF core stamp (native pixels): stamps are 2·CORE_HALF + 1 wide.
CORE_HALF = 12
#: Oversampling of the PSF core. Keys cubic interpolation of the F106 effective PSF sampled 16x per
#: pixel is within 1e-4 of its peak everywhere (bilinear: 2e-3); a PSF fit's flux varies by 0.02%
#: with the sub-pixel phase (bilinear: 0.3%; at 4x sampling 0.7% and 5%).
OVERSAMPLE = 16
#: Extent of the effective PSF carried by the wings (native pixels).
WING_SIZE = 256


@numba.njit(cache=True)
def _add_point_sources(image, xs, ys, fluxes, epsf, oversample, half):
    """Add point sources in place, each on a stamp of ±half pixels
    (:func:`romanflow.kernels.epsf.add_point_source`).

    image : (ny, nx) float32, e-/s; xs, ys : 0-based pixel positions; fluxes : e-/s;
    epsf : (n, n) fraction of flux per pixel, sampled every 1/oversample pixel, source at (n-1)/2.
    """
    for s in range(xs.shape[0]):
        add_point_source(image, epsf, oversample, xs[s], ys[s], fluxes[s], half)


def wing_kernel(detector, optical_element) -> np.ndarray:
    """Effective PSF at native sampling with the core box zeroed ((WING_SIZE+1)², fraction per pixel)."""
    kernel = np.array(psf_image(detector, optical_element, oversample=1, size=WING_SIZE))
    c = WING_SIZE // 2
    kernel[c - CORE_HALF:c + CORE_HALF + 1, c - CORE_HALF:c + CORE_HALF + 1] = 0.0
    return kernel


def galaxy_profile(row, flux, gsparams=None):
    """galsim profile of one galaxy row (shape columns of a scene table), flux in e-/s, unsheared size in arcsec."""
    import galsim

    kind = row["type"]
    if kind == "sersic":
        # n on a 0.05 grid: galsim caches each index's profile tables
        n = round(float(min(max(row["sersic_n"], 0.3), 6.2)) * 20.0) / 20.0
        profile = galsim.Sersic(n=n, half_light_radius=float(row["half_light_radius"]), flux=flux,
                                gsparams=gsparams, trunc=0.0)
    else:
        fb = float(row["bulge_fraction"])
        bulge = galsim.DeVaucouleurs(half_light_radius=float(row["bulge_half_light_radius"]),
                                     flux=flux * fb, gsparams=gsparams)
        disk = galsim.Exponential(half_light_radius=float(row["half_light_radius"]), flux=flux * (1 - fb),
                                  gsparams=gsparams)
        profile = galsim.Add([bulge, disk])
    return profile


def render_sources(table, x, y, flux_e, shape, detector, optical_element, *, north_angle_deg=90.0,
                   parity=1, pixel_scale=0.11) -> np.ndarray:
    """Ideal image of the sources (e-/s per pixel) on a science array.

    Parameters
    ----------
    table : pandas.DataFrame
        Scene rows (``type`` and galaxy shape columns), aligned with x, y, flux_e.
    x, y : ndarray
        0-based science-pixel positions (sources may lie off the array).
    flux_e : ndarray
        Total flux of each source (e-/s).
    shape : (int, int)
        Science array shape.
    detector, optical_element : str
        Select the PSF.
    north_angle_deg : float
        Angle of the north direction from the +x pixel axis (deg, counter-clockwise).
    parity : int
        +1 if east is 90° counter-clockwise from north in pixel space, −1 otherwise.
    pixel_scale : float
        Local pixel scale (arcsec/pixel).

    Returns
    -------
    ndarray float32 (ny, nx)
    """
    import galsim
    import scipy.signal

    ny, nx = shape
    image = np.zeros(shape, dtype=np.float32)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    flux_e = np.asarray(flux_e, dtype=np.float64)
    wing_half = WING_SIZE // 2
    near = (x > -wing_half) & (x < nx - 1 + wing_half) & (y > -wing_half) & (y < ny - 1 + wing_half) & (flux_e > 0)
    kinds = table["type"].to_numpy()

    # cores: stars
    core_epsf = np.ascontiguousarray(psf_image(detector, optical_element, oversample=OVERSAMPLE,
                                               size=2 * CORE_HALF + 2))
    reach = (x > -CORE_HALF - 1) & (x < nx + CORE_HALF) & (y > -CORE_HALF - 1) & (y < ny + CORE_HALF)
    stars = near & reach & (kinds == "star")
    _add_point_sources(image, x[stars], y[stars], flux_e[stars], core_epsf, OVERSAMPLE, CORE_HALF)

    # cores: galaxies
    # the galaxies' PSF core spans ±(CORE_HALF + 0.5) pixels: the box the wing kernel leaves out
    # (sampled twice per pixel: the effective PSF is smooth, and the FFTs are 4x smaller)
    core_ii = psf_interpolated_image(detector, optical_element, oversample=2, size=2 * CORE_HALF + 1)
    core_ii = core_ii.dilate(1.0 / pixel_scale)
    gal_idx = np.nonzero(near & (kinds != "star"))[0]
    rows = table.iloc[gal_idx].to_dict("records")
    for k, row in zip(gal_idx, rows):
        hlr_pix = float(row["half_light_radius"]) / pixel_scale
        half = int(max(CORE_HALF, min(6 * hlr_pix + 4, 128)))
        if not (x[k] > -half - 1 and x[k] < nx + half and y[k] > -half - 1 and y[k] < ny + half):
            continue
        profile = galaxy_profile(row, float(flux_e[k]))
        q = float(row["axis_ratio"])
        pa = float(row["position_angle"])
        beta = north_angle_deg + parity * pa
        if q < 1.0:
            profile = profile.shear(q=q, beta=beta * galsim.degrees)
        # shape in arcsec -> pixels
        profile = profile.dilate(1.0 / pixel_scale)
        conv = galsim.Convolve(profile, core_ii)
        ix, iy = int(math.floor(x[k] + 0.5)), int(math.floor(y[k] + 0.5))
        size = 2 * half + 1
        stamp = galsim.ImageF(size, size, scale=1.0)
        conv.drawImage(stamp, method="no_pixel", offset=(x[k] - ix, y[k] - iy))
        x0, y0 = ix - half, iy - half
        sx0, sy0 = max(0, -x0), max(0, -y0)
        sx1, sy1 = min(size, nx - x0), min(size, ny - y0)
        if sx1 > sx0 and sy1 > sy0:
            image[y0 + sy0:y0 + sy1, x0 + sx0:x0 + sx1] += stamp.array[sy0:sy1, sx0:sx1]

    # wings of every source, by one FFT convolution of a flux map
    if near.any():
        kernel = wing_kernel(detector, optical_element)
        pad = wing_half
        fluxmap = np.zeros((ny + 2 * pad, nx + 2 * pad))
        ix = np.floor(x[near] + 0.5).astype(np.int64) + pad
        iy = np.floor(y[near] + 0.5).astype(np.int64) + pad
        ok = (ix >= 0) & (ix < nx + 2 * pad) & (iy >= 0) & (iy < ny + 2 * pad)
        np.add.at(fluxmap, (iy[ok], ix[ok]), flux_e[near][ok])
        wings = scipy.signal.oaconvolve(fluxmap, kernel, mode="same")
        image += wings[pad:pad + ny, pad:pad + nx].astype(np.float32)
    return image
