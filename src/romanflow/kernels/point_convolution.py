"""Point sources on whole pixels convolved with a small kernel, summed directly.

The image of fluxes ``f_s`` placed on pixels ``(iy_s, ix_s)`` and convolved with an odd, square
kernel ``K`` of half-size ``c``::

    image[y, x] = Σ_s f_s · K[y − iy_s + c, x − ix_s + c]

(the terms with both kernel indices inside ``[0, 2c]``). This is what an FFT convolution of a
flux map gives (``scipy.signal.oaconvolve(fluxmap, K, mode='same')``) without its round-off or
its padding: each source costs ``(2c + 1)²`` multiply-adds, so a few ten thousand sources with
a 257² kernel are summed faster than a 4096² FFT. Sources may lie off the image (up to ``c``
pixels outside still add light to it).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _sum_rows(image, iy, ix, flux, kernel):
    ny, nx = image.shape
    c = (kernel.shape[0] - 1) // 2
    for y in numba.prange(ny):
        first = np.searchsorted(iy, y - c, side="left")
        last = np.searchsorted(iy, y + c, side="right")
        for s in range(first, last):
            ky = y - iy[s] + c
            x0 = max(ix[s] - c, 0)
            x1 = min(ix[s] + c + 1, nx)
            f = flux[s]
            for x in range(x0, x1):
                image[y, x] += f * kernel[ky, x - ix[s] + c]


def convolve_point_sources(shape, iy, ix, flux, kernel) -> np.ndarray:
    """Fluxes on whole pixels convolved with a kernel: float64 image of ``shape`` (flux unit per pixel).

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` of the image.
    iy, ix : int arrays (n,)
        Pixel of each source (0-based; may lie outside the image).
    flux : float array (n,)
        Flux of each source.
    kernel : float array (2c + 1, 2c + 1)
        Fraction of a source's flux per pixel, the source at the central element.

    Each pixel sums its sources in order of ``iy`` (then of input order), whatever the
    number of threads.
    """
    kernel = np.ascontiguousarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 != 1:
        raise ValueError(f"kernel must be square with an odd size, got shape {kernel.shape}")
    iy = np.asarray(iy, dtype=np.int64).ravel()
    ix = np.asarray(ix, dtype=np.int64).ravel()
    flux = np.asarray(flux, dtype=np.float64).ravel()
    if not (iy.size == ix.size == flux.size):
        raise ValueError(f"iy, ix and flux differ in length: {iy.size}, {ix.size}, {flux.size}")
    ny, nx = (int(s) for s in shape)
    if ny < 0 or nx < 0:
        raise ValueError(f"image shape must not be negative, got {shape}")
    order = np.argsort(iy, kind="stable")
    image = np.zeros((ny, nx))
    _sum_rows(image, iy[order], ix[order], flux[order], kernel)
    return image
