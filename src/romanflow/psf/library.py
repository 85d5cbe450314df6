"""PSF libraries: grids of oversampled effective PSFs over a detector, stored as ``epsf`` references.

A library holds, for one detector and optical element, effective PSFs
(optics ⊗ pixel ⊗ pointing jitter; no inter-pixel capacitance) on a
:data:`GRID` × :data:`GRID` grid of detector positions for the spectral
types :data:`LIBRARY_SPECTRAL_TYPES`, sampled :data:`LIBRARY_OVERSAMPLE`
times per pixel, in the official ``epsf`` layout: ``psf[defocus,
spectral_type, grid_index, y, x]`` (float32) with ``meta.pixel_x`` /
``meta.pixel_y`` the grid positions (0-based science pixels of the full
detector), ``meta.oversample``, ``meta.spectral_type`` and the jitter
(``meta.jitter_major``/``jitter_minor``: Gaussian sigma per axis, mas).
Each stamp follows :mod:`romanflow.psf` conventions (source at the central
sample, fraction of the flux per native-pixel area, unit total flux: the
stamp itself holds slightly less).

Built from galsim.roman (:mod:`romanflow.psf.optics`): broadband over
:data:`LIBRARY_WAVELENGTHS` sub-bands weighted by each type's photons.
A real ``epsf`` file (e.g. made with stpsf) with the same layout drops in.

Between grid positions a library is interpolated quadratically (3 positions per
axis; linearly with more); between
spectral types, by the combination of the library's types whose photon
weights across the band best match the wanted spectrum's (least squares,
weights summing to 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from romanflow.detector import N_PIX_SCIENCE, detector_name, detector_number
from romanflow.errors import InputFileError, ParameterError
from romanflow.psf.optics import monochromatic_stack
from romanflow.psf.spectra import SPECTRAL_TYPES, band_name, photon_weights, spectrum_label

__all__ = ["GRID", "LIBRARY_OVERSAMPLE", "LIBRARY_HALF", "LIBRARY_SPECTRAL_TYPES", "LIBRARY_WAVELENGTHS",
           "LIBRARY_PUPIL_BIN", "NOMINAL_JITTER_MAS", "PSFLibrary", "build_library", "library_positions",
           "write_library", "read_library"]

GRID = 3  #: grid positions per detector axis
LIBRARY_OVERSAMPLE = 4  #: samples per native pixel
LIBRARY_HALF = 24  #: half-size of the stamps (native pixels): 2·24·4 + 1 = 193 samples per side
LIBRARY_SPECTRAL_TYPES = ("A0V", "G2V", "M5V")  #: spectral types of a library (the official set)
LIBRARY_WAVELENGTHS = 6  #: sub-bands of the broadband integration
LIBRARY_PUPIL_BIN = 8  #: galsim.roman pupil binning
NOMINAL_JITTER_MAS = 8.0  #: pointing jitter (Gaussian sigma per axis, mas) in the library's PSFs


def library_positions(grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Grid positions (0-based full-detector science pixels), x varying fastest: (pixel_x, pixel_y)."""
    axis = np.linspace(0.0, N_PIX_SCIENCE - 1.0, grid)
    gx, gy = np.meshgrid(axis, axis)
    return gx.ravel(), gy.ravel()


@dataclass
class PSFLibrary:
    """One detector's and optical element's effective PSFs on a grid of positions and spectral types.

    Attributes
    ----------
    detector, optical_element : str
    psf : ndarray (n_types, n_positions, n, n) float64
        In-focus stamps (module conventions).
    pixel_x, pixel_y : ndarray (n_positions,)
        Grid positions (0-based full-detector science pixels).
    oversample : int
    spectral_types : tuple of str
    jitter_mas : float
        Gaussian jitter sigma per axis already in the stamps (mas).
    source : str
        The file it came from, or ``'built'``.
    """

    detector: str
    optical_element: str
    psf: np.ndarray
    pixel_x: np.ndarray
    pixel_y: np.ndarray
    oversample: int
    spectral_types: tuple
    jitter_mas: float = 0.0
    source: str = "built"

    def __post_init__(self):
        xs = np.unique(np.round(self.pixel_x, 6))
        ys = np.unique(np.round(self.pixel_y, 6))
        if xs.size * ys.size != self.pixel_x.size:
            raise InputFileError(self.source, "epsf positions do not form a rectangular grid")
        self._xs, self._ys = xs, ys
        index = np.empty((ys.size, xs.size), np.int64)
        for k, (px, py) in enumerate(zip(self.pixel_x, self.pixel_y)):
            index[np.searchsorted(ys, round(py, 6)), np.searchsorted(xs, round(px, 6))] = k
        self._index = index
        self._flat_index = index.ravel()

    def spectral_coefficients(self, spectrum) -> np.ndarray:
        """Coefficients (summing to 1) of the library's spectral types that best represent ``spectrum``."""
        label = spectrum_label(spectrum)
        for k, name in enumerate(self.spectral_types):
            if isinstance(spectrum, str) and label == name.upper() or (spectrum is None and name.upper() == label):
                out = np.zeros(len(self.spectral_types))
                out[k] = 1.0
                return out
        n = 64
        target = photon_weights(self.optical_element, spectrum, n)[1]
        basis = np.array([photon_weights(self.optical_element, t if t.upper() in SPECTRAL_TYPES else None, n)[1]
                          for t in self.spectral_types]).T
        if basis.shape[1] == 1:
            return np.ones(1)
        # least squares with sum(c) = 1: c = c_last-eliminated solution
        a = basis[:, :-1] - basis[:, -1:]
        b = target - basis[:, -1]
        c, *_ = np.linalg.lstsq(a, b, rcond=None)
        return np.append(c, 1.0 - c.sum())

    def position_weights(self, x: float, y: float) -> np.ndarray:
        """Weights of the grid positions at (x, y): quadratic Lagrange on a 3-point axis, linear otherwise."""
        w = np.empty(self.pixel_x.size)
        wy = _axis_weights(self._ys, float(y))
        wx = _axis_weights(self._xs, float(x))
        w[self._flat_index] = (wy[:, None] * wx[None, :]).ravel()
        return w

    def epsf(self, x: float, y: float, spectrum=None) -> np.ndarray:
        """Effective PSF at a detector position for a spectrum (interpolated, see :meth:`position_weights`)."""
        coeffs = self.spectral_coefficients(spectrum)
        w = self.position_weights(x, y)
        out = np.zeros(self.psf.shape[2:])
        for k in np.nonzero(w)[0]:
            out += w[k] * np.tensordot(coeffs, self.psf[:, k], axes=1)
        return out


def _axis_weights(nodes: np.ndarray, t: float) -> np.ndarray:
    """Interpolation weights of the nodes of one axis at t (clamped to the nodes' span)."""
    n = nodes.size
    if n == 1:
        return np.ones(1)
    t = nodes[0] if t < nodes[0] else (nodes[-1] if t > nodes[-1] else t)
    if n == 3:
        a, b, c = nodes
        return np.array([(t - b) * (t - c) / ((a - b) * (a - c)), (t - a) * (t - c) / ((b - a) * (b - c)),
                         (t - a) * (t - b) / ((c - a) * (c - b))])
    w = np.zeros(n)
    k = min(int(np.searchsorted(nodes, t, side="right")) - 1, n - 2)
    f = (t - nodes[k]) / (nodes[k + 1] - nodes[k])
    w[k], w[k + 1] = 1.0 - f, f
    return w


def build_library(detector, optical_element: str, *, grid: int = GRID, oversample: int = LIBRARY_OVERSAMPLE,
                  half: int = LIBRARY_HALF, spectral_types=LIBRARY_SPECTRAL_TYPES,
                  n_wavelengths: int = LIBRARY_WAVELENGTHS, pupil_bin: int = LIBRARY_PUPIL_BIN,
                  jitter_mas: float = NOMINAL_JITTER_MAS) -> PSFLibrary:
    """Build a library from galsim.roman (about 0.6 s per position and sub-band with the defaults)."""
    detector = detector_name(detector)
    band_name(optical_element)
    size = 2 * half * oversample + 1
    px, py = library_positions(grid)
    weights = []
    wavelengths = None
    for t in spectral_types:
        wavelengths, w = photon_weights(optical_element, t, n_wavelengths)
        weights.append(w)
    weights = np.array(weights)
    psf = np.empty((len(spectral_types), px.size, size, size))
    for k in range(px.size):
        stack = monochromatic_stack(detector_number(detector), optical_element, px[k], py[k], wavelengths,
                                    oversample=oversample, size=size, pupil_bin=pupil_bin, jitter_mas=jitter_mas)
        psf[:, k] = np.tensordot(weights, stack, axes=1)
    return PSFLibrary(detector, optical_element.upper(), psf, px, py, int(oversample), tuple(spectral_types),
                      float(jitter_mas))


def write_library(path, library: PSFLibrary, *, useafter="2020-01-01T00:00:00",
                  description: str | None = None) -> None:
    """Write a library as a validated ``EpsfRefModel`` (atomic)."""
    from romanflow.formats.reference_io import reference_meta, write_reference

    meta = reference_meta("epsf", library.detector, optical_element=library.optical_element, useafter=useafter,
                          description=description or (
                              f"effective PSFs from galsim.roman: {GRID}x{GRID} positions, "
                              f"{LIBRARY_WAVELENGTHS} sub-bands, pupil_bin {LIBRARY_PUPIL_BIN}, blackbody spectral types"))
    meta.update({"oversample": int(library.oversample), "spectral_type": list(library.spectral_types),
                 "defocus": [0], "pixel_x": [float(v) for v in library.pixel_x],
                 "pixel_y": [float(v) for v in library.pixel_y], "jitter_major": float(library.jitter_mas),
                 "jitter_minor": float(library.jitter_mas), "jitter_position_angle": 0.0})
    write_reference(path, "epsf", meta, psf=library.psf[None].astype(np.float32))


def read_library(path) -> PSFLibrary:
    """Read an ``epsf`` reference file (the in-focus plane) as a :class:`PSFLibrary`."""
    from romanflow.formats.reference_io import read_reference

    ref = read_reference(path, "epsf")
    meta = ref.meta
    psf = np.asarray(ref["psf"], np.float64)
    defocus = list(meta.get("defocus") or [0])
    plane = defocus.index(0) if 0 in defocus else 0
    try:
        px = np.asarray(meta["pixel_x"], float)
        py = np.asarray(meta["pixel_y"], float)
        oversample = int(meta.get("oversample") or 4)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"epsf metadata incomplete: {exc}") from None
    types = tuple(meta.get("spectral_type") or [f"type{k}" for k in range(psf.shape[1])])
    if psf.shape[2] != px.size or px.size != py.size or psf.shape[1] != len(types):
        raise InputFileError(path, f"epsf psf array {psf.shape} disagrees with {px.size} positions and {len(types)} types")
    if psf.shape[-1] % 2 == 0:
        raise InputFileError(path, f"epsf stamps must have an odd side, got {psf.shape[-2:]}")
    jitter = meta.get("jitter_major")
    jitter = float(jitter) if jitter is not None and float(jitter) >= 0 else 0.0
    inst = meta.get("instrument", {})
    return PSFLibrary(str(inst.get("detector", "")), str(inst.get("optical_element", "")), psf[plane], px, py,
                      oversample, types, jitter, str(path))


def check_position(x, y):
    """Raise a one-line error for a position off the full detector (0-based science pixels)."""
    lo, hi = -0.5, N_PIX_SCIENCE - 0.5
    for name, v in (("x", x), ("y", y)):
        if not (np.isfinite(v) and lo <= v <= hi):
            raise ParameterError(name, v, f"position off the detector: expected {lo} .. {hi} (0-based science pixels)")
