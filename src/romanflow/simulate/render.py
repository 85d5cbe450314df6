"""Rendering sources into a detector's ideal count-rate image.

The simulator draws its PSFs directly from galsim.roman's optics
(:mod:`romanflow.psf.optics`), never from the PSF library the analysis uses
(:mod:`romanflow.psf`), so that what is measured is not what was made:

* **chromatic per source**: each star's PSF is the photon-weighted mean of
  :data:`SIM_WAVELENGTHS` monochromatic PSFs over the band, weighted by a
  blackbody of the star's temperature (from its F062 - F158 colour,
  :func:`romanflow.psf.spectra.temperature_from_colour`; 5770 K without
  those magnitudes); galaxies use a 5770 K blackbody;
* **at the true position**: monochromatic PSFs are computed on nodes at
  most :data:`NODE_SPACING` pixels apart over the simulated patch (one node
  at the centre of a patch under 512 pixels) and bilinearly weighted to each
  star's position (the library has 3 × 3 positions per detector);
* **pointing jitter**: a Gaussian of :data:`SIM_JITTER_MAS` per axis;

Each source is drawn as a postage stamp of the PSF *core* (±:data:`CORE_HALF`
pixels of the source's nearest pixel), sampled :data:`OVERSAMPLE` times per
pixel and interpolated by :func:`romanflow.kernels.epsf.add_point_source`
(Keys cubic); the PSF *wings* beyond the core, where the light of every source
has nearly the same shape, are added for all sources at once by one FFT
convolution of a map of the source fluxes with the wing kernel (the effective
PSF at the node nearest the patch centre). Core plus wings carry the full flux of every source
(up to the :data:`WING_SIZE` box, ±14″). Galaxies: galsim Sersic / de
Vaucouleurs + exponential profiles, sheared to their axis ratio and position
angle, convolved with the core of the effective PSF at the nearest node and
drawn with ``method='no_pixel'`` (the effective PSF includes the pixel).
There is no inter-pixel capacitance.

Units: positions in 0-based science pixels of the patch; fluxes and images in e-/s.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np

from romanflow.detector import N_PIX_SCIENCE, detector_number
from romanflow.kernels.epsf import add_point_source
from romanflow.psf.optics import broadband_image, monochromatic_stack
from romanflow.psf.spectra import photon_weights, temperature_from_colour

#: Half-size of the PSF core stamp (native pixels): stamps are 2·CORE_HALF + 1 wide.
CORE_HALF = 12
#: Oversampling of the PSF core (Keys cubic interpolation of the F106 effective PSF sampled 8x per
#: pixel is within ~3e-4 of its peak).
OVERSAMPLE = 8
#: Extent of the effective PSF carried by the wings (native pixels).
WING_SIZE = 256
#: Sub-bands of the simulator's broadband PSFs.
SIM_WAVELENGTHS = 8
#: galsim.roman pupil binning of the simulator's PSFs.
SIM_PUPIL_BIN = 8
#: Pointing jitter of the simulated exposures (Gaussian sigma per axis, mas).
SIM_JITTER_MAS = 8.0
#: Largest distance between the simulator's PSF nodes (pixels).
NODE_SPACING = 1024
#: Temperature of sources without a colour (K).
DEFAULT_TEMPERATURE = 5770.0


@numba.njit(cache=True)
def _add_point_sources(image, xs, ys, fluxes, epsf, oversample, half):
    """Add point sources in place, each on a stamp of ±half pixels
    (:func:`romanflow.kernels.epsf.add_point_source`).

    image : (ny, nx) float32, e-/s; xs, ys : 0-based pixel positions; fluxes : e-/s;
    epsf : (n, n) fraction of flux per pixel, sampled every 1/oversample pixel, source at (n-1)/2.
    """
    for s in range(xs.shape[0]):
        add_point_source(image, epsf, oversample, xs[s], ys[s], fluxes[s], half)


def _nodes(n: int) -> np.ndarray:
    """Node coordinates (patch pixels) along an axis of n pixels."""
    if n <= 512:
        return np.array([(n - 1) / 2.0])
    return np.linspace(0.0, n - 1.0, 1 + int(math.ceil((n - 1) / NODE_SPACING)))


@lru_cache(maxsize=4)
def _node_stacks(detector, optical_element, nx, ny):
    """Monochromatic core PSFs at every node: (wavelengths, node x (patch px), node y, stack[ny, nx, nwl, m, m])."""
    offset = (N_PIX_SCIENCE - nx) / 2.0, (N_PIX_SCIENCE - ny) / 2.0
    xs, ys = _nodes(nx), _nodes(ny)
    wavelengths, _ = photon_weights(optical_element, DEFAULT_TEMPERATURE, SIM_WAVELENGTHS)
    m = 2 * (CORE_HALF + 1) * OVERSAMPLE + 1
    stack = np.empty((ys.size, xs.size, wavelengths.size, m, m))
    for j, yv in enumerate(ys):
        for i, xv in enumerate(xs):
            stack[j, i] = monochromatic_stack(detector_number(detector), optical_element, xv + offset[0],
                                              yv + offset[1], wavelengths, oversample=OVERSAMPLE, size=m,
                                              pupil_bin=SIM_PUPIL_BIN, jitter_mas=SIM_JITTER_MAS)
    return wavelengths, xs, ys, stack


@lru_cache(maxsize=512)
def _temperature_weights(optical_element, temperature):
    return photon_weights(optical_element, float(temperature), SIM_WAVELENGTHS)[1]


def _axis(nodes, t):
    """Indices and linear weights of the two nodes around t (clamped)."""
    if nodes.size == 1:
        return (0, 0), (1.0, 0.0)
    t = min(max(t, nodes[0]), nodes[-1])
    k = min(int(np.searchsorted(nodes, t, side="right")) - 1, nodes.size - 2)
    f = (t - nodes[k]) / (nodes[k + 1] - nodes[k])
    return (k, k + 1), (1.0 - f, f)


def star_temperatures(table) -> np.ndarray:
    """Blackbody temperature (K) of each row from its F062 - F158 colour (5770 K without it)."""
    if "mag_F062" in table and "mag_F158" in table:
        colour = table["mag_F062"].to_numpy(float) - table["mag_F158"].to_numpy(float)
        temps = temperature_from_colour(np.where(np.isfinite(colour), colour, 0.6))
        return np.round(temps / 50.0) * 50.0
    return np.full(len(table), DEFAULT_TEMPERATURE)


def _effective_psf_at(stacks, optical_element, x, y, temperature):
    """Chromatic effective PSF of one star at patch position (x, y) ((m, m), fraction per native pixel)."""
    wavelengths, xs, ys, stack = stacks
    weights = _temperature_weights(optical_element, temperature)
    (i0, i1), (wx0, wx1) = _axis(xs, x)
    (j0, j1), (wy0, wy1) = _axis(ys, y)
    out = np.zeros(stack.shape[-2:])
    for j, wy in ((j0, wy0), (j1, wy1)):
        for i, wx in ((i0, wx0), (i1, wx1)):
            if wx * wy != 0.0:
                out += (wx * wy) * np.tensordot(weights, stack[j, i], axes=1)
    return out


@lru_cache(maxsize=4)
def wing_kernel(detector, optical_element, nx: int = N_PIX_SCIENCE, ny: int = N_PIX_SCIENCE) -> np.ndarray:
    """Effective PSF at native sampling at the node nearest the patch centre, core box zeroed.

    ((WING_SIZE+1)², fraction of the flux per pixel.)
    """
    xs, ys = _nodes(nx), _nodes(ny)
    node_x = xs[np.argmin(np.abs(xs - (nx - 1) / 2.0))] + (N_PIX_SCIENCE - nx) / 2.0
    node_y = ys[np.argmin(np.abs(ys - (ny - 1) / 2.0))] + (N_PIX_SCIENCE - ny) / 2.0
    kernel = broadband_image(detector_number(detector), optical_element, node_x, node_y, spectrum=DEFAULT_TEMPERATURE,
                             n_wavelengths=SIM_WAVELENGTHS, oversample=1, size=WING_SIZE + 1,
                             pupil_bin=SIM_PUPIL_BIN, jitter_mas=SIM_JITTER_MAS)
    c = WING_SIZE // 2
    kernel[c - CORE_HALF:c + CORE_HALF + 1, c - CORE_HALF:c + CORE_HALF + 1] = 0.0
    return kernel


def _galaxy_core(stacks, optical_element, x, y):
    """galsim InterpolatedImage of the 5770 K effective-PSF core at the node nearest (x, y), 2 samples per pixel."""
    import galsim

    from romanflow.detector import PIXEL_SCALE

    wavelengths, xs, ys, stack = stacks
    i = int(np.argmin(np.abs(xs - x)))
    j = int(np.argmin(np.abs(ys - y)))
    key = (id(stack), j, i)
    cached = _GALAXY_CORES.get(key)
    if cached is None:
        weights = _temperature_weights(optical_element, DEFAULT_TEMPERATURE)
        epsf = np.tensordot(weights, stack[j, i], axes=1)
        c = (epsf.shape[0] - 1) // 2
        step = OVERSAMPLE // 2
        reach = (CORE_HALF + 0.5) * OVERSAMPLE
        idx = np.arange(c - int(reach // step) * step, c + int(reach // step) * step + 1, step)
        core = epsf[np.ix_(idx, idx)] / 4.0  # 2 samples per pixel: fraction of flux per sample
        cached = galsim.InterpolatedImage(galsim.Image(np.ascontiguousarray(core), scale=PIXEL_SCALE / 2),
                                          x_interpolant="lanczos3", normalization="flux")
        if len(_GALAXY_CORES) > 64:
            _GALAXY_CORES.clear()
        _GALAXY_CORES[key] = cached
    return cached


_GALAXY_CORES: dict = {}


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

    # cores: stars, each with its own chromatic PSF at its own position
    stacks = _node_stacks(detector, optical_element, nx, ny)
    reach = (x > -CORE_HALF - 1) & (x < nx + CORE_HALF) & (y > -CORE_HALF - 1) & (y < ny + CORE_HALF)
    stars = np.nonzero(near & reach & (kinds == "star"))[0]
    temps = star_temperatures(table.iloc[stars]) if stars.size else np.zeros(0)
    for k, temp in zip(stars, temps):
        epsf = _effective_psf_at(stacks, optical_element, x[k], y[k], temp)
        _add_point_sources(image, x[k:k + 1], y[k:k + 1], flux_e[k:k + 1], epsf, OVERSAMPLE, CORE_HALF)

    # cores: galaxies
    # the galaxies' PSF core spans ±(CORE_HALF + 0.5) pixels: the box the wing kernel leaves out
    # (sampled twice per pixel: the effective PSF is smooth, and the FFTs are 4x smaller)
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
        conv = galsim.Convolve(profile, _galaxy_core(stacks, optical_element, x[k], y[k]).dilate(1.0 / pixel_scale))
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
        kernel = wing_kernel(detector, optical_element, nx, ny)
        pad = wing_half
        fluxmap = np.zeros((ny + 2 * pad, nx + 2 * pad))
        ix = np.floor(x[near] + 0.5).astype(np.int64) + pad
        iy = np.floor(y[near] + 0.5).astype(np.int64) + pad
        ok = (ix >= 0) & (ix < nx + 2 * pad) & (iy >= 0) & (iy < ny + 2 * pad)
        np.add.at(fluxmap, (iy[ok], ix[ok]), flux_e[near][ok])
        wings = scipy.signal.oaconvolve(fluxmap, kernel, mode="same")
        image += wings[pad:pad + ny, pad:pad + nx].astype(np.float32)
    return image
