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
has nearly the same shape, are added for all sources at once: the source fluxes,
on their nearest pixels, convolved with the wing kernel (the effective PSF at the
node nearest the patch centre) by :func:`romanflow.kernels.point_convolution.convolve_point_sources`.
Core plus wings carry the full flux of every source
(up to the :data:`WING_SIZE` box, ±14″). Galaxies: galsim Sersic / de
Vaucouleurs + exponential profiles, sheared to their axis ratio and position
angle, convolved with the core of the effective PSF at the nearest node and
drawn with ``method='no_pixel'`` (the effective PSF includes the pixel).
There is no inter-pixel capacitance.

The galsim work (the PSFs at the nodes, the galaxies) is shared by worker
processes where a patch has several nodes and the machine several cores
(:class:`SourceRenderer`); the image is the same, sum for sum, with any number of
workers.

Units: positions in 0-based science pixels of the patch; fluxes and images in e-/s.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache

import numba
import numpy as np

from romanflow.detector import N_PIX_SCIENCE, PIXEL_SCALE, detector_number
from romanflow.kernels.epsf import add_point_source
from romanflow.kernels.point_convolution import convolve_point_sources
from romanflow.psf.optics import monochromatic_stack
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
#: Fewest galaxies worth sending to worker processes.
MIN_GALAXIES_PER_WORKER = 200


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


def _wing_node(nx: int, ny: int) -> tuple[float, float]:
    """Detector position (full-detector pixels) of the node nearest the patch centre."""
    xs, ys = _nodes(nx), _nodes(ny)
    node_x = xs[np.argmin(np.abs(xs - (nx - 1) / 2.0))] + (N_PIX_SCIENCE - nx) / 2.0
    node_y = ys[np.argmin(np.abs(ys - (ny - 1) / 2.0))] + (N_PIX_SCIENCE - ny) / 2.0
    return node_x, node_y


def _psf_images(detector, optical_element, nx, ny, wavelength_index):
    """The simulator's monochromatic PSFs at some of its wavelengths (all when ``wavelength_index`` is None).

    Returns
    -------
    cores : ndarray (node y, node x, wavelengths, m, m)
        Effective PSF cores at every node, :data:`OVERSAMPLE` samples per pixel.
    wing : ndarray (wavelengths, WING_SIZE + 1, WING_SIZE + 1)
        Effective PSF at native sampling at the node nearest the patch centre.

    Both in fraction of the flux per native pixel.
    """
    offset = (N_PIX_SCIENCE - nx) / 2.0, (N_PIX_SCIENCE - ny) / 2.0
    xs, ys = _nodes(nx), _nodes(ny)
    wavelengths, _ = photon_weights(optical_element, DEFAULT_TEMPERATURE, SIM_WAVELENGTHS)
    if wavelength_index is not None:
        wavelengths = wavelengths[np.asarray(wavelength_index)]
    sca = detector_number(detector)
    m = 2 * (CORE_HALF + 1) * OVERSAMPLE + 1
    cores = np.empty((ys.size, xs.size, wavelengths.size, m, m))
    wing_x, wing_y = _wing_node(nx, ny)
    wing = None
    for j, yv in enumerate(ys):
        for i, xv in enumerate(xs):
            node_x, node_y = xv + offset[0], yv + offset[1]
            cores[j, i] = monochromatic_stack(sca, optical_element, node_x, node_y, wavelengths,
                                              oversample=OVERSAMPLE, size=m, pupil_bin=SIM_PUPIL_BIN,
                                              jitter_mas=SIM_JITTER_MAS)
            if (node_x, node_y) == (wing_x, wing_y):  # this node's optical PSFs are still in optical_psf's cache
                wing = _wing_stack(sca, optical_element, wing_x, wing_y, wavelengths)
    if wing is None:
        wing = _wing_stack(sca, optical_element, wing_x, wing_y, wavelengths)
    return cores, wing


def _wing_stack(sca, optical_element, x, y, wavelengths):
    return monochromatic_stack(sca, optical_element, x, y, wavelengths, oversample=1, size=WING_SIZE + 1,
                               pupil_bin=SIM_PUPIL_BIN, jitter_mas=SIM_JITTER_MAS)


def _assemble_psfs(optical_element, nx, ny, parts):
    """Node stacks and wing kernel from ``[(wavelength_index, (cores, wing)), ...]`` covering every wavelength."""
    wavelengths, weights = photon_weights(optical_element, DEFAULT_TEMPERATURE, SIM_WAVELENGTHS)
    first = parts[0][1]
    cores = np.empty(first[0].shape[:2] + (wavelengths.size,) + first[0].shape[3:])
    wing = np.empty((wavelengths.size,) + first[1].shape[1:])
    for index, (part_cores, part_wing) in parts:
        cores[:, :, index] = part_cores
        wing[index] = part_wing
    kernel = np.tensordot(weights, wing, axes=1)
    c = WING_SIZE // 2
    kernel[c - CORE_HALF:c + CORE_HALF + 1, c - CORE_HALF:c + CORE_HALF + 1] = 0.0
    return (wavelengths, _nodes(nx), _nodes(ny), cores), kernel


#: (detector, optical element, nx, ny) -> (node stacks, wing kernel), the most recent few.
_PSF_CACHE: OrderedDict = OrderedDict()
_PSF_CACHE_SIZE = 4


def _cached_psfs(key):
    found = _PSF_CACHE.get(key)
    if found is not None:
        _PSF_CACHE.move_to_end(key)
    return found


def _store_psfs(key, value):
    _PSF_CACHE[key] = value
    _PSF_CACHE.move_to_end(key)
    while len(_PSF_CACHE) > _PSF_CACHE_SIZE:
        _PSF_CACHE.popitem(last=False)


def wing_kernel(detector, optical_element, nx: int = N_PIX_SCIENCE, ny: int = N_PIX_SCIENCE) -> np.ndarray:
    """Effective PSF at native sampling at the node nearest the patch centre, core box zeroed.

    ((WING_SIZE+1)², fraction of the flux per pixel.)
    """
    return _psfs(detector, optical_element, nx, ny)[1]


def _psfs(detector, optical_element, nx, ny):
    key = (detector, optical_element, int(nx), int(ny))
    found = _cached_psfs(key)
    if found is None:
        found = _assemble_psfs(optical_element, nx, ny, [(np.arange(SIM_WAVELENGTHS), _psf_images(*key, None))])
        _store_psfs(key, found)
    return found


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


def _galaxy_core_image(stacks, optical_element, j, i):
    """The 5770 K effective-PSF core at node (j, i), 2 samples per pixel, in fraction of the flux per sample."""
    wavelengths, xs, ys, stack = stacks
    weights = _temperature_weights(optical_element, DEFAULT_TEMPERATURE)
    epsf = np.tensordot(weights, stack[j, i], axes=1)
    c = (epsf.shape[0] - 1) // 2
    step = OVERSAMPLE // 2
    reach = (CORE_HALF + 0.5) * OVERSAMPLE
    idx = np.arange(c - int(reach // step) * step, c + int(reach // step) * step + 1, step)
    return np.ascontiguousarray(epsf[np.ix_(idx, idx)] / 4.0)


def _galaxy_core_profile(core):
    """galsim InterpolatedImage of a galaxy PSF core (:func:`_galaxy_core_image`)."""
    import galsim

    return galsim.InterpolatedImage(galsim.Image(core, scale=PIXEL_SCALE / 2), x_interpolant="lanczos3",
                                    normalization="flux")


def galaxy_profile(row, flux, gsparams=None):
    """galsim profile of one galaxy row (shape columns of a scene table), flux in e-/s, unsheared size in arcsec."""
    import galsim

    kind = row["type"]
    if kind == "sersic":
        # n on a 0.05 grid: galsim caches each index's profile tables
        n = _sersic_index(row["sersic_n"])
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


def _sersic_index(n) -> float:
    """Sersic index on the 0.05 grid the simulator draws (within [0.3, 6.2])."""
    return round(float(min(max(n, 0.3), 6.2)) * 20.0) / 20.0


def _galaxy_stamps(rows, xs, ys, fluxes, nodes, cores, shape, pixel_scale, north_angle_deg, parity):
    """Galaxy stamps, each ``(values float32 (h, w), y0, x0)`` (the part on the patch) or None (none of it is).

    ``rows``: galaxy rows (dicts of scene columns); ``xs``, ``ys``: patch positions; ``fluxes``: e-/s;
    ``nodes``: the key of each galaxy's PSF core in ``cores`` (arrays of :func:`_galaxy_core_image`).
    """
    import galsim

    ny, nx = shape
    profiles = {}
    out = []
    for row, x, y, flux, node in zip(rows, xs, ys, fluxes, nodes):
        hlr_pix = float(row["half_light_radius"]) / pixel_scale
        half = int(max(CORE_HALF, min(6 * hlr_pix + 4, 128)))
        if not (x > -half - 1 and x < nx + half and y > -half - 1 and y < ny + half):
            out.append(None)
            continue
        core = profiles.get(node)
        if core is None:  # in pixels
            core = profiles[node] = _galaxy_core_profile(cores[node]).dilate(1.0 / pixel_scale)
        profile = galaxy_profile(row, float(flux))
        q = float(row["axis_ratio"])
        pa = float(row["position_angle"])
        beta = north_angle_deg + parity * pa
        if q < 1.0:
            profile = profile.shear(q=q, beta=beta * galsim.degrees)
        # shape in arcsec -> pixels
        profile = profile.dilate(1.0 / pixel_scale)
        conv = galsim.Convolve(profile, core)
        ix, iy = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
        size = 2 * half + 1
        stamp = galsim.ImageF(size, size, scale=1.0)
        conv.drawImage(stamp, method="no_pixel", offset=(x - ix, y - iy))
        x0, y0 = ix - half, iy - half
        sx0, sy0 = max(0, -x0), max(0, -y0)
        sx1, sy1 = min(size, nx - x0), min(size, ny - y0)
        if sx1 > sx0 and sy1 > sy0:
            out.append((stamp.array[sy0:sy1, sx0:sx1].copy(), y0 + sy0, x0 + sx0))
        else:
            out.append(None)
    return out


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _init_worker() -> None:
    """A worker's galsim runs on one OpenMP thread: the workers share the cores, and a forked
    process must not reach for the parent's OpenMP threads."""
    import galsim

    galsim.set_omp_threads(1)


def _balanced_groups(keys, n_groups):
    """Split item indices into ``n_groups`` lists of near-equal length, items of equal key together but
    where a cut falls (so each key's galsim set-up is made in one worker, two at most)."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    bounds = np.linspace(0, len(order), n_groups + 1).round().astype(int)
    return [sorted(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class SourceRenderer:
    """Renders sources on one patch of a detector (:meth:`render`), its PSFs computed from the start.

    Parameters
    ----------
    detector, optical_element : str
        Select the PSF.
    shape : (int, int)
        Science array shape (ny, nx).
    workers : int, optional
        Processes for the galsim work (default: the usable cores). Worker processes are
        forked only where they pay: a patch with several PSF nodes, on a platform that
        forks, from a process that may have children; otherwise everything runs here.
        The image does not depend on the number of workers.

    The PSFs of a patch are kept for the next renderers of the same patch (a few patches).
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, detector, optical_element, shape, *, workers: int | None = None):
        self.detector = detector
        self.optical_element = optical_element
        self.shape = (int(shape[0]), int(shape[1]))
        ny, nx = self.shape
        self._key = (detector, optical_element, nx, ny)
        self._workers = max(1, min(int(workers or _usable_cpus()), SIM_WAVELENGTHS))
        self._pool = None
        self._psf_futures = None
        self._psfs = _cached_psfs(self._key)
        if self._psfs is None and self._workers > 1 and _nodes(nx).size * _nodes(ny).size > 1:
            pool = self._start_pool()
            if pool is not None:
                groups = [np.arange(k, SIM_WAVELENGTHS, self._workers) for k in range(self._workers)]
                self._psf_futures = [(g, pool.submit(_psf_images, *self._key, g)) for g in groups]

    def _start_pool(self):
        if self._pool is None and self._workers > 1 and "fork" in multiprocessing.get_all_start_methods() \
                and not multiprocessing.current_process().daemon:
            self._pool = ProcessPoolExecutor(max_workers=self._workers, mp_context=multiprocessing.get_context("fork"),
                                             initializer=_init_worker)
        return self._pool

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(cancel=exc_type is not None)
        return False

    def close(self, cancel: bool = False) -> None:
        """Stop the worker processes (at once with ``cancel``)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if cancel:
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.kill()
        else:
            pool.shutdown(wait=True)

    def psfs(self):
        """(node stacks, wing kernel) of the patch (see :func:`_psf_images`)."""
        if self._psfs is None:
            if self._psf_futures is not None:
                parts = [(index, future.result()) for index, future in self._psf_futures]
                self._psf_futures = None
                self._psfs = _assemble_psfs(self.optical_element, self.shape[1], self.shape[0], parts)
                _store_psfs(self._key, self._psfs)
            else:
                self._psfs = _psfs(*self._key)
        return self._psfs

    def render(self, table, x, y, flux_e, *, north_angle_deg=90.0, parity=1, pixel_scale=0.11) -> np.ndarray:
        """Ideal image of the sources (e-/s per pixel, float32 (ny, nx)); see :func:`render_sources`."""
        ny, nx = self.shape
        image = np.zeros(self.shape, dtype=np.float32)
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        flux_e = np.asarray(flux_e, dtype=np.float64)
        wing_half = WING_SIZE // 2
        near = (x > -wing_half) & (x < nx - 1 + wing_half) & (y > -wing_half) & (y < ny - 1 + wing_half) \
            & (flux_e > 0)
        kinds = table["type"].to_numpy()
        stacks, kernel = self.psfs()
        wavelengths, node_xs, node_ys, stack = stacks

        # galaxies: sent to the workers first, drawn while the stars and wings are added here
        gal_idx = np.nonzero(near & (kinds != "star"))[0]
        rows = table.iloc[gal_idx].to_dict("records")
        nodes = [(int(np.argmin(np.abs(node_ys - y[k]))), int(np.argmin(np.abs(node_xs - x[k])))) for k in gal_idx]
        galaxy_cores = {node: _galaxy_core_image(stacks, self.optical_element, *node) for node in set(nodes)}
        args = (self.shape, pixel_scale, north_angle_deg, parity)
        n_groups = min(self._workers, gal_idx.size // MIN_GALAXIES_PER_WORKER)
        pool = self._start_pool() if n_groups > 1 else None
        if pool is not None:
            # galaxies of one Sersic index share galsim's profile tables; bulge+disk ones share theirs
            keys = [_sersic_index(r["sersic_n"]) if r["type"] == "sersic" else -1.0 for r in rows]
            groups = _balanced_groups(keys, n_groups)
            futures = [(g, pool.submit(_galaxy_stamps, [rows[i] for i in g], x[gal_idx[g]], y[gal_idx[g]],
                                       flux_e[gal_idx[g]], [nodes[i] for i in g],
                                       {nodes[i]: galaxy_cores[nodes[i]] for i in g}, *args)) for g in groups]
        else:
            futures = None

        # cores: stars, each with its own chromatic PSF at its own position
        reach = (x > -CORE_HALF - 1) & (x < nx + CORE_HALF) & (y > -CORE_HALF - 1) & (y < ny + CORE_HALF)
        stars = np.nonzero(near & reach & (kinds == "star"))[0]
        temps = star_temperatures(table.iloc[stars]) if stars.size else np.zeros(0)
        for k, temp in zip(stars, temps):
            epsf = _effective_psf_at(stacks, self.optical_element, x[k], y[k], temp)
            _add_point_sources(image, x[k:k + 1], y[k:k + 1], flux_e[k:k + 1], epsf, OVERSAMPLE, CORE_HALF)

        # wings of every source, from the fluxes on their nearest pixels
        wings = None
        if near.any():
            ix = np.floor(x[near] + 0.5).astype(np.int64)
            iy = np.floor(y[near] + 0.5).astype(np.int64)
            wings = convolve_point_sources(self.shape, iy, ix, flux_e[near], kernel).astype(np.float32)

        # cores: galaxies, added in the order of the table
        # the galaxies' PSF core spans ±(CORE_HALF + 0.5) pixels: the box the wing kernel leaves out
        # (sampled twice per pixel: the effective PSF is smooth, and the FFTs are 4x smaller)
        if futures is None:
            stamps = _galaxy_stamps(rows, x[gal_idx], y[gal_idx], flux_e[gal_idx], nodes, galaxy_cores, *args)
        else:
            stamps = [None] * gal_idx.size
            for group, future in futures:
                for i, stamp in zip(group, future.result()):
                    stamps[i] = stamp
        for stamp in stamps:
            if stamp is not None:
                values, y0, x0 = stamp
                image[y0:y0 + values.shape[0], x0:x0 + values.shape[1]] += values

        if wings is not None:
            image += wings
        return image


def render_sources(table, x, y, flux_e, shape, detector, optical_element, *, north_angle_deg=90.0,
                   parity=1, pixel_scale=0.11, workers: int | None = None) -> np.ndarray:
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
    workers : int, optional
        Processes for the galsim work (:class:`SourceRenderer`).

    Returns
    -------
    ndarray float32 (ny, nx)
    """
    with SourceRenderer(detector, optical_element, shape, workers=workers) as renderer:
        return renderer.render(table, x, y, flux_e, north_angle_deg=north_angle_deg, parity=parity,
                               pixel_scale=pixel_scale)
