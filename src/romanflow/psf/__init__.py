"""Point-spread functions of the WFI: one API for every PSF the analysis uses.

>>> from romanflow.psf import psf_image, psf_model
>>> img = psf_image("WFI07", "F158", 2000.0, 100.0, oversample=4)     # doctest: +SKIP
>>> model = psf_model("WFI07", "F158", spectrum="M5V")                 # doctest: +SKIP
>>> model.evaluate(2000.0, 100.0, dx, dy)                              # doctest: +SKIP

Conventions (every image of this package)
-----------------------------------------
Position
    ``x, y`` are 0-based science pixels of the *full* 4088² detector (pixel
    centres at integers). An image of a smaller central patch of
    ``science_size`` pixels is at ``+ (4088 - science_size) / 2``
    (:func:`detector_position`).
Sampling
    ``oversample`` samples per native 0.11″ pixel along both axes.
Centre
    The source is at array coordinate ``((n - 1) / 2, (n - 1) / 2)`` of an
    ``n × n`` image, indexed ``[y, x]``: the central sample for odd ``n``;
    for even ``n`` the corner shared by the four central samples. The default
    ``size`` is odd (``2·12·oversample + 1``).
Normalisation
    Values are the *fraction of the source's flux per native-pixel area*. For
    a pixel-convolved image (the default) a sample is the fraction of the flux
    a native pixel centred there collects, so with ``oversample=1`` the image
    sums to the flux fraction inside it (→ 1 for large sizes) and with
    ``oversample=k`` every k-th sample does (the whole array sums to ≈ k²).
Pixel response and IPC
    ``pixel_convolved=True``: the effective PSF, optics ⊗ the pixel's square
    response ⊗ pointing jitter, from the PSF library (interpolated in
    position and spectrum). Inter-pixel capacitance is in neither the library
    nor the simulator. ``pixel_convolved=False``: the optical PSF (⊗ jitter)
    computed directly from galsim.roman (seconds per call).
Spectrum
    A spectral type (``'A0V'``, ``'G2V'`` ...), a temperature (K) or an SED
    table (:mod:`romanflow.psf.spectra`); ``None`` is ``'G2V'``. Broadband:
    photon-weighted over the band.
Jitter
    Gaussian sigma per axis (mas); ``None`` is the library's own
    (:data:`NOMINAL_JITTER_MAS` for synthesized libraries); larger values
    blur further, smaller ones are refused.

Libraries are ``epsf`` reference files selected by the reference rules
(:mod:`romanflow.refdata`), synthesized into the embedded store on first use
(:mod:`romanflow.psf.library`, ~30 s per detector and filter).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from romanflow.detector import N_PIX_SCIENCE, detector_name, detector_number
from romanflow.errors import ParameterError, RomanflowError
from romanflow.psf.library import (
    LIBRARY_PUPIL_BIN,
    LIBRARY_WAVELENGTHS,
    NOMINAL_JITTER_MAS,
    PSFLibrary,
    build_library,
    check_position,
    read_library,
    write_library,
)
from romanflow.psf.matching import convolve_same, matching_kernel
from romanflow.psf.spectra import DEFAULT_SPECTRUM, SPECTRAL_TYPES, band_name, spectrum_label

__all__ = ["psf_image", "psf_model", "PSFModel", "PSFLibrary", "library_for", "detector_position",
           "upsample_epsf", "MODEL_OVERSAMPLE", "DEFAULT_HALF", "SPECTRAL_TYPES", "DEFAULT_SPECTRUM",
           "NOMINAL_JITTER_MAS", "build_library", "read_library", "write_library", "matching_kernel",
           "convolve_same", "matching_kernels"]

#: Samples per pixel of the effective PSFs a PSFModel evaluates (band-limited upsampling of the library).
MODEL_OVERSAMPLE = 8
#: Default half-size of psf_image (native pixels).
DEFAULT_HALF = 12
#: Start of validity assumed when selecting a library without an exposure.
DEFAULT_DATE = "2027-01-01T00:00:00"


def detector_position(x, y, science_size: int = N_PIX_SCIENCE):
    """Full-detector position of pixel (x, y) of a ``science_size`` central patch."""
    offset = (N_PIX_SCIENCE - int(science_size)) / 2.0
    return np.asarray(x, float) + offset, np.asarray(y, float) + offset


def _write_synthesized(path, detector, optical_element):
    write_library(path, build_library(detector, optical_element))
    return path


def _register():
    from romanflow.refdata.synthesize import register_synthesizer

    register_synthesizer("epsf", _write_synthesized)


_register()


@lru_cache(maxsize=8)
def _read_cached(path: str, mtime: float) -> PSFLibrary:
    return read_library(path)


def library_for(detector, optical_element: str, *, context=None, library=None, start_time=None) -> PSFLibrary:
    """The PSF library of a detector and filter: ``library`` (a PSFLibrary or an epsf file) if given,
    else the ``epsf`` reference the rules of ``context`` (default: the embedded store) select."""
    if isinstance(library, PSFLibrary):
        return library
    if library is not None:
        path = Path(library)
    else:
        from romanflow.refdata import select_reference

        meta = {"instrument": {"name": "WFI", "detector": detector_name(detector),
                               "optical_element": optical_element.upper()},
                "exposure": {"type": "WFI_IMAGE", "start_time": start_time or DEFAULT_DATE}}
        path = select_reference("epsf", meta, context)
        if path is None:
            raise RomanflowError(f"no epsf reference applies to {detector_name(detector)} {optical_element}")
    if not path.is_file():
        raise RomanflowError(f"{path}: epsf reference not found")
    return _read_cached(str(path), path.stat().st_mtime)


def upsample_epsf(epsf: np.ndarray, factor: int) -> np.ndarray:
    """Band-limited (Fourier) upsampling of an odd-sided, Nyquist-sampled PSF by an integer factor.

    The result has ``(n - 1)·factor + 1`` samples per side, spans the same
    extent, keeps the source at its central sample and the per-native-pixel
    normalisation.
    """
    a = np.asarray(epsf, np.float64)
    n = a.shape[0]
    if factor == 1:
        return a.copy()
    spec = np.fft.fft2(np.fft.ifftshift(a))
    m = n * factor
    big = np.zeros((m, m), complex)
    h = (n - 1) // 2
    idx = np.r_[0:h + 1, m - h:m]
    src = np.r_[0:h + 1, n - h:n]
    big[np.ix_(idx, idx)] = spec[np.ix_(src, src)]
    up = np.fft.ifft2(big).real * factor**2
    c = (n - 1) * factor // 2
    up = np.roll(up, (c, c), axis=(0, 1))
    size = (n - 1) * factor + 1
    return up[:size, :size]


def _check_common(detector, optical_element, oversample, jitter_mas):
    detector = detector_name(detector)
    band_name(optical_element)
    if isinstance(oversample, bool) or int(oversample) != oversample or int(oversample) < 1:
        raise ParameterError("oversample", oversample, "must be an integer >= 1")
    if jitter_mas is not None and not (np.isfinite(jitter_mas) and jitter_mas >= 0):
        raise ParameterError("jitter_mas", jitter_mas, "must be a number of mas >= 0")
    return detector, optical_element.upper(), int(oversample)


class PSFModel:
    """Effective PSF of one detector, filter, spectrum and jitter, anywhere on the detector.

    Evaluates the library's stamps (combined in spectrum, upsampled to
    :data:`MODEL_OVERSAMPLE` samples per pixel by band-limited interpolation)
    with Keys cubic interpolation (:mod:`romanflow.kernels.epsf`) and
    interpolates them in position (:meth:`PSFLibrary.position_weights`). Positions are full-detector
    0-based science pixels.
    """

    oversample = MODEL_OVERSAMPLE

    def __init__(self, library: PSFLibrary, spectrum=None, jitter_mas=None, *, cache_cell: float = 32.0):
        self.library = library
        self.detector = library.detector
        self.optical_element = library.optical_element
        self.spectrum = spectrum
        self.spectrum_label = spectrum_label(spectrum)
        self.coefficients = library.spectral_coefficients(spectrum)
        self.jitter_mas = library.jitter_mas if jitter_mas is None else float(jitter_mas)
        if self.jitter_mas < library.jitter_mas - 1e-6:
            raise ParameterError("jitter_mas", jitter_mas,
                                 f"below the library's own jitter ({library.jitter_mas} mas): cannot be removed")
        self.cache_cell = float(cache_cell)
        self._cache: dict = {}
        self._up = None

    def __repr__(self):
        return (f"PSFModel({self.detector!r}, {self.optical_element!r}, spectrum={self.spectrum_label!r}, "
                f"jitter_mas={self.jitter_mas})")

    @property
    def half(self) -> int:
        """Half-extent of the effective PSF (native pixels)."""
        return (self.library.psf.shape[-1] - 1) // 2 // self.library.oversample

    def _nodes(self) -> np.ndarray:
        """The library's stamps for this spectrum and jitter, upsampled: (n_positions, m, m)."""
        if self._up is None:
            lib = self.library
            combined = np.tensordot(self.coefficients, lib.psf, axes=1)
            extra = self.jitter_mas**2 - lib.jitter_mas**2
            if extra > 1e-9:
                from scipy.ndimage import gaussian_filter

                from romanflow.detector import PIXEL_SCALE

                sigma = np.sqrt(extra) / 1000.0 / PIXEL_SCALE * lib.oversample
                combined = np.array([gaussian_filter(c, sigma, mode="constant") for c in combined])
            factor = MODEL_OVERSAMPLE // lib.oversample
            if factor * lib.oversample != MODEL_OVERSAMPLE:
                raise RomanflowError(f"{lib.source}: epsf oversampling {lib.oversample} does not divide "
                                     f"{MODEL_OVERSAMPLE}")
            self._up = np.ascontiguousarray([upsample_epsf(c, factor) for c in combined])
        return self._up

    def library_epsf(self, x: float, y: float) -> np.ndarray:
        """Effective PSF at the library's sampling at a position (spectrum and extra jitter applied)."""
        check_position(x, y)
        factor = MODEL_OVERSAMPLE // self.library.oversample
        return self.epsf_exact(x, y)[::factor, ::factor]

    def epsf_exact(self, x: float, y: float) -> np.ndarray:
        """Effective PSF (``MODEL_OVERSAMPLE`` samples per pixel) interpolated to exactly (x, y)."""
        check_position(x, y)
        w = self.library.position_weights(float(x), float(y))
        nodes = self._nodes()
        return np.tensordot(w, nodes, axes=1)

    def epsf(self, x: float, y: float) -> np.ndarray:
        """Effective PSF (``MODEL_OVERSAMPLE`` samples per pixel, source at the central sample) near a position.

        Cached on a grid of ``cache_cell`` pixels: within a cell the PSF of the
        cell centre is returned (its variation over 32 pixels is far below the
        interpolation error). :meth:`epsf_exact` interpolates to the position.
        """
        check_position(x, y)
        cell = self.cache_cell
        key = (int(np.floor(x / cell)), int(np.floor(y / cell)))
        out = self._cache.get(key)
        if out is None:
            cx = min(max((key[0] + 0.5) * cell, 0.0), N_PIX_SCIENCE - 1.0)
            cy = min(max((key[1] + 0.5) * cell, 0.0), N_PIX_SCIENCE - 1.0)
            out = self.epsf_exact(cx, cy)
            out.setflags(write=False)
            if len(self._cache) > 128:
                self._cache.clear()
            self._cache[key] = out
        return out

    def stack(self, x, y, *, cell: float = 512.0, offset: float = 0.0):
        """Effective PSFs for a fit of many sources: ``(stack (k, m, m), index (n,))``.

        Sources are grouped in cells of ``cell`` pixels; each group gets the
        effective PSF of its cell centre. ``offset`` is added to ``x, y`` to
        make full-detector positions (:func:`detector_position`).
        """
        x = np.asarray(x, float) + offset
        y = np.asarray(y, float) + offset
        cx = np.clip(np.nan_to_num(x, nan=N_PIX_SCIENCE / 2), 0, N_PIX_SCIENCE - 1)
        cy = np.clip(np.nan_to_num(y, nan=N_PIX_SCIENCE / 2), 0, N_PIX_SCIENCE - 1)
        kx = np.floor(cx / cell).astype(np.int64)
        ky = np.floor(cy / cell).astype(np.int64)
        keys, index = np.unique(ky * 10000 + kx, return_inverse=True)
        if keys.size == 0:
            return self.epsf(N_PIX_SCIENCE / 2 - 0.5, N_PIX_SCIENCE / 2 - 0.5)[None], np.zeros(0, np.int64)
        stack = []
        for key in keys:
            sel = (ky * 10000 + kx) == key
            stack.append(self.epsf(float(np.clip(cx[sel].mean(), 0, N_PIX_SCIENCE - 1)),
                                   float(np.clip(cy[sel].mean(), 0, N_PIX_SCIENCE - 1))))
        return np.array(stack), index.astype(np.int64)

    def evaluate(self, x: float, y: float, dx, dy, *, gradient: bool = False):
        """Fraction of the flux per native pixel (and gradient) at offsets ``(dx, dy)`` = pixel − source,
        for a source exactly at (x, y) (each library position evaluated, then interpolated)."""
        from romanflow.kernels.epsf import evaluate_epsf, evaluate_epsf_mixture

        check_position(x, y)
        w = self.library.position_weights(float(x), float(y))
        nodes = self._nodes()
        if not gradient:
            return evaluate_epsf_mixture(nodes, w, MODEL_OVERSAMPLE, dx, dy)
        total = None
        for k in np.nonzero(w)[0]:
            part = evaluate_epsf(nodes[k], MODEL_OVERSAMPLE, dx, dy, gradient=True)
            total = [w[k] * p for p in part] if total is None else [t + w[k] * p for t, p in zip(total, part)]
        return tuple(total)

    def image(self, x: float, y: float, *, oversample: int = 1, size: int | None = None,
              phase=(0.0, 0.0)) -> np.ndarray:
        """Image of the effective PSF (package conventions); ``phase`` shifts the source by (dx, dy) pixels
        from the conventional centre."""
        if isinstance(oversample, bool) or int(oversample) != oversample or int(oversample) < 1:
            raise ParameterError("oversample", oversample, "must be an integer >= 1")
        oversample = int(oversample)
        size = 2 * DEFAULT_HALF * oversample + 1 if size is None else size
        if isinstance(size, bool) or int(size) != size or int(size) < 1:
            raise ParameterError("size", size, "must be a positive integer number of samples")
        size = int(size)
        from romanflow.kernels.epsf import evaluate_epsf_grid

        check_position(x, y)
        offsets = (np.arange(size) - (size - 1) / 2.0) / oversample
        w = self.library.position_weights(float(x), float(y))
        return evaluate_epsf_grid(self._nodes(), w, MODEL_OVERSAMPLE, offsets - float(phase[0]),
                                  offsets - float(phase[1]))


@lru_cache(maxsize=16)
def _model_cached(detector, optical_element, spectrum_key, jitter_mas, context, library):
    lib = library_for(detector, optical_element, context=context, library=library)
    spectrum = None if spectrum_key is None else spectrum_key
    return PSFModel(lib, spectrum, jitter_mas)


def psf_model(detector, band: str, *, spectrum=None, jitter_mas=None, context=None, library=None) -> PSFModel:
    """The :class:`PSFModel` of a detector and filter (library from the reference rules, or ``library``).

    Raises
    ------
    RomanflowError
        Unknown detector or filter, a bad spectrum or jitter (one line).
    """
    detector, band, _ = _check_common(detector, band, 1, jitter_mas)
    hashable = spectrum is None or isinstance(spectrum, (str, int, float, np.integer, np.floating))
    if isinstance(library, PSFLibrary) or not hashable:
        lib = library_for(detector, band, context=context, library=library)
        return PSFModel(lib, spectrum, jitter_mas)
    key = spectrum.strip().upper() if isinstance(spectrum, str) else (None if spectrum is None else float(spectrum))
    if isinstance(key, str) and key not in SPECTRAL_TYPES:
        spectrum_label(spectrum)
        from romanflow.psf.spectra import spectrum_function

        spectrum_function(spectrum)  # raises the one-line error
    return _model_cached(detector, band, key, None if jitter_mas is None else float(jitter_mas),
                         None if context is None else str(getattr(context, "directory", context)),
                         None if library is None else str(library))


def psf_image(detector, band: str, x: float, y: float, *, oversample: int = 1, spectrum=None,
              size: int | None = None, pixel_convolved: bool = True, jitter_mas=None, context=None,
              library=None) -> np.ndarray:
    """Normalised image of the PSF of a detector and filter at a detector position.

    Parameters
    ----------
    detector : str or int
        ``'WFI07'`` or 7.
    band : str
        Imaging filter (``'F158'``).
    x, y : float
        Source position, 0-based science pixels of the full detector.
    oversample : int
        Samples per native pixel (>= 1).
    spectrum : str, float or table, optional
        Spectral type, temperature (K) or SED table; G2V by default.
    size : int, optional
        Samples per side (odd or even); ``2·12·oversample + 1`` by default.
    pixel_convolved : bool
        Effective PSF from the library (True) or optical PSF from galsim.roman (False).
    jitter_mas : float, optional
        Pointing jitter (Gaussian sigma per axis, mas); the library's by default.
    context, library : optional
        Reference rules or an explicit epsf file / PSFLibrary.

    Returns
    -------
    ndarray (size, size) float64
        Package conventions (module docstring): source at ``((n-1)/2, (n-1)/2)``,
        values in fraction of the flux per native-pixel area.
    """
    detector, band, oversample = _check_common(detector, band, oversample, jitter_mas)
    check_position(x, y)
    if size is not None and (isinstance(size, bool) or int(size) != size or int(size) < 1):
        raise ParameterError("size", size, "must be a positive integer number of samples")
    if pixel_convolved:
        model = psf_model(detector, band, spectrum=spectrum, jitter_mas=jitter_mas, context=context, library=library)
        return model.image(float(x), float(y), oversample=oversample, size=size)
    from romanflow.psf.optics import broadband_image

    n = 2 * DEFAULT_HALF * oversample + 1 if size is None else int(size)
    jitter = NOMINAL_JITTER_MAS if jitter_mas is None else float(jitter_mas)
    return broadband_image(detector_number(detector), band, float(x), float(y), spectrum=spectrum,
                           n_wavelengths=LIBRARY_WAVELENGTHS, oversample=oversample, size=n,
                           pupil_bin=LIBRARY_PUPIL_BIN, pixel_convolved=False, jitter_mas=jitter)


def matching_kernels(model_from: PSFModel, model_to: PSFModel, positions, *, oversample: int = 1, size: int | None = None,
                     regularization: float = 1e-6, window: float | None = None) -> np.ndarray:
    """Position-dependent matching kernels: one per (x, y) in ``positions``, ``(n, size, size)``.

    Each turns ``model_from``'s PSF at that position into ``model_to``'s
    (:func:`matching_kernel`), both sampled ``oversample`` times per pixel.
    """
    out = []
    for x, y in np.atleast_2d(positions):
        a = model_from.image(float(x), float(y), oversample=oversample, size=size)
        b = model_to.image(float(x), float(y), oversample=oversample, size=size)
        out.append(matching_kernel(a, b, regularization=regularization, window=window))
    return np.array(out)
