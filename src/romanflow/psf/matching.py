"""PSF-matching kernels: the kernel that turns one PSF into another by convolution.

``matching_kernel(psf_from, psf_to)`` returns ``K`` with ``psf_from ⊛ K ≈ psf_to``,
computed in Fourier space as the regularised ratio

    K̂ = P̂_to · conj(P̂_from) / (|P̂_from|² + λ · max|P̂_from|²) · W(k)

(Tikhonov regularisation ``λ = regularization``; ``W`` a split-cosine window
that is 1 below ``window`` × the highest frequency of the grid and falls to 0
at it, ``None`` for no window). Both PSFs share one sampling and shape (odd
side, source at the central sample: :mod:`romanflow.psf` conventions); the
kernel has that shape, its centre at the central sample and sums to
``sum(psf_to) / sum(psf_from)``. Matching to a *broader* PSF is well posed;
to a sharper one, the regularisation decides what is lost.
"""

from __future__ import annotations

import numpy as np

from romanflow.errors import ParameterError

__all__ = ["matching_kernel", "convolve_same"]


def _check(name, array):
    a = np.asarray(array, np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] % 2 == 0 or not np.all(np.isfinite(a)):
        raise ParameterError(name, f"array of shape {a.shape}", "must be a finite square array with an odd side")
    return a


def matching_kernel(psf_from, psf_to, *, regularization: float = 1e-6, window: float | None = None) -> np.ndarray:
    """Kernel ``K`` (same shape) with ``psf_from ⊛ K ≈ psf_to`` (module notes)."""
    a = _check("psf_from", psf_from)
    b = _check("psf_to", psf_to)
    if a.shape != b.shape:
        raise ParameterError("psf_to", f"shape {b.shape}", f"must have the shape of psf_from {a.shape}")
    if not (np.isfinite(regularization) and regularization >= 0):
        raise ParameterError("regularization", regularization, "must be a number >= 0")
    if window is not None and not (0 < window <= 1):
        raise ParameterError("window", window, "must be in (0, 1] (fraction of the highest frequency) or None")
    n = a.shape[0]
    fa = np.fft.rfft2(np.fft.ifftshift(a))
    fb = np.fft.rfft2(np.fft.ifftshift(b))
    power = np.abs(fa) ** 2
    ratio = fb * np.conj(fa) / (power + regularization * power.max())
    ratio[0, 0] = fb[0, 0] / fa[0, 0]  # the flux ratio, unregularised
    if window is not None:
        ky = np.fft.fftfreq(n)[:, None]
        kx = np.fft.rfftfreq(n)[None, :]
        k = np.hypot(kx, ky) / 0.5
        lo = window
        taper = np.where(k <= lo, 1.0, np.where(k >= 1.0, 0.0, 0.5 * (1 + np.cos(np.pi * (k - lo) / max(1 - lo, 1e-12)))))
        ratio = ratio * taper
    kernel = np.fft.fftshift(np.fft.irfft2(ratio, s=a.shape))
    return kernel


def convolve_same(image, kernel) -> np.ndarray:
    """``image ⊛ kernel`` on the image's grid (kernel centred at its central sample; zero outside)."""
    from scipy.signal import fftconvolve

    return fftconvolve(np.asarray(image, np.float64), np.asarray(kernel, np.float64), mode="same")
