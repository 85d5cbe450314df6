"""HiPS tile arithmetic: pixel layout inside a tile, resampling onto it, the tile hierarchy, display stretch.

Pure functions on arrays. A HiPS tile of order ``k`` and index ``n`` (HEALPix NESTED) is a square of
``width`` x ``width`` pixels (``width`` a power of two, ``width = 2**b``); its pixels are the HEALPix
cells of order ``k + b`` whose nested indices are ``n * width**2 + L``, ``L`` = 0 .. width**2 - 1. The
cell ``L`` sits at row ``width - 1 - a`` and column ``c`` of the tile array as stored in a FITS tile
(first row at the bottom), where ``a`` collects the even bits of ``L`` and ``c`` its odd bits. A PNG or
JPEG tile is the same picture stored top row first, i.e. the FITS array flipped upside down.
"""

from __future__ import annotations

import functools

import numpy as np


def _check_width(width: int) -> int:
    width = int(width)
    if width < 2 or width & (width - 1):
        raise ValueError(f"tile width {width}: expected a power of two >= 2")
    return width.bit_length() - 1


def _spread_bits(v: np.ndarray, bits: int) -> np.ndarray:
    out = np.zeros_like(v)
    for b in range(bits):
        out |= ((v >> b) & 1) << (2 * b)
    return out


@functools.lru_cache(maxsize=4)
def _local_index_cached(width: int) -> np.ndarray:
    bits = _check_width(width)
    rows, cols = np.mgrid[0:width, 0:width].astype(np.int64)
    a = width - 1 - rows
    out = _spread_bits(a, bits) | (_spread_bits(cols, bits) << 1)
    out.setflags(write=False)
    return out


def tile_local_index(width: int) -> np.ndarray:
    """Nested index within its tile (0 .. width**2 - 1) of every pixel of a FITS tile array.

    Returns
    -------
    ndarray of int64, (width, width)
        ``out[row, col] = L`` such that the pixel is HEALPix cell ``n * width**2 + L`` of order ``k + b``.
    """
    return _local_index_cached(int(width))


def tile_cell_indices(order: int, index: int, width: int) -> np.ndarray:
    """HEALPix nested indices, at order ``order + log2(width)``, of every pixel of tile ``(order, index)``."""
    return np.uint64(index) * np.uint64(width * width) + tile_local_index(width).astype(np.uint64)


def node_positions(width: int, step: int = 16) -> np.ndarray:
    """Rows (or columns) of a tile at which a smooth map is evaluated exactly: every ``step``-th and the last."""
    return np.unique(np.r_[np.arange(0, width, step), width - 1])


def interpolation_weights(nodes: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of 0..width-1: the node interval ``k`` below it and the fraction ``f`` of the way to ``k + 1``."""
    nodes = np.asarray(nodes, np.float64)
    if nodes[0] != 0 or nodes[-1] != width - 1 or np.any(np.diff(nodes) <= 0):
        raise ValueError("nodes must rise strictly from 0 to width - 1")
    t = np.arange(width, dtype=np.float64)
    k = np.clip(np.searchsorted(nodes, t, side="right") - 1, 0, len(nodes) - 2)
    return k, (t - nodes[k]) / (nodes[k + 1] - nodes[k])


def interpolate_grid(values_at_nodes: np.ndarray, weights: tuple) -> np.ndarray:
    """A smooth map known on a node grid (n, n), spread linearly to every pixel of the tile (rows, then columns)."""
    k, f = weights
    v = np.asarray(values_at_nodes, np.float64)
    rows = v[k] * (1 - f)[:, None] + v[k + 1] * f[:, None]
    return rows[:, k] * (1 - f)[None, :] + rows[:, k + 1] * f[None, :]


def bilinear_sample(image: np.ndarray, valid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``image`` at pixel positions (``x`` column, ``y`` row; 0 = first pixel centre).

    Positions whose four neighbours are not all ``valid`` (or that fall outside the image) give NaN.

    Parameters
    ----------
    image : ndarray (ny, nx)
    valid : ndarray of bool (ny, nx)
    x, y : ndarray
        Positions, any one shape.

    Returns
    -------
    ndarray of float32, the shape of ``x``
    """
    image = np.asarray(image)
    valid = np.asarray(valid, bool)
    if image.shape != valid.shape or image.ndim != 2:
        raise ValueError(f"image {image.shape} and valid {valid.shape} must be one 2-D shape")
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    ny, nx = image.shape
    out = np.full(x.shape, np.nan, np.float32)
    inside = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (y >= 0) & (x <= nx - 1) & (y <= ny - 1)
    if not inside.any():
        return out
    xs, ys = x[inside], y[inside]
    x0 = np.minimum(np.floor(xs).astype(np.int64), max(nx - 2, 0))
    y0 = np.minimum(np.floor(ys).astype(np.int64), max(ny - 2, 0))
    x1 = np.minimum(x0 + 1, nx - 1)
    y1 = np.minimum(y0 + 1, ny - 1)
    fx = xs - x0
    fy = ys - y0
    ok = valid[y0, x0] & valid[y0, x1] & valid[y1, x0] & valid[y1, x1]
    v = ((1 - fy) * ((1 - fx) * image[y0, x0] + fx * image[y0, x1])
         + fy * ((1 - fx) * image[y1, x0] + fx * image[y1, x1]))
    out[inside] = np.where(ok, v, np.nan).astype(np.float32)
    return out


def nearest_sample(image: np.ndarray, x: np.ndarray, y: np.ndarray, fill=0.0) -> np.ndarray:
    """Value of the pixel nearest each position (``fill`` outside the image), float32."""
    image = np.asarray(image)
    ny, nx = image.shape
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    out = np.full(x.shape, fill, np.float32)
    inside = np.isfinite(x) & np.isfinite(y) & (x > -0.5) & (y > -0.5) & (x < nx - 0.5) & (y < ny - 0.5)
    out[inside] = image[np.rint(y[inside]).astype(np.int64), np.rint(x[inside]).astype(np.int64)]
    return out


def combine_weighted(values: list, weights: list) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of tile contributions (NaN or zero weight ignored): (value, total weight)."""
    if len(values) != len(weights) or not values:
        raise ValueError("combine_weighted needs as many weights as values, at least one")
    total = np.zeros(np.shape(values[0]), np.float64)
    wsum = np.zeros_like(total)
    for v, w in zip(values, weights):
        v = np.asarray(v, np.float64)
        w = np.asarray(w, np.float64)
        use = np.isfinite(v) & np.isfinite(w) & (w > 0)
        total += np.where(use, v * w, 0.0)
        wsum += np.where(use, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(wsum > 0, total / wsum, np.nan)
    return value.astype(np.float32), wsum.astype(np.float32)


def child_quadrant(child: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of a parent FITS tile that child ``child`` (0..3, i.e. index ``4 n + child``) fills."""
    _check_width(width)
    half = width // 2
    a_high, c_high = child & 1, (child >> 1) & 1
    rows = slice(0, half) if a_high else slice(half, width)  # row = width - 1 - a
    cols = slice(half, width) if c_high else slice(0, half)
    return rows, cols


def parent_tile(children: list, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A tile of order ``k - 1`` from its four children of order ``k`` (``None`` for an absent child).

    Each parent pixel is the weighted mean of the 2x2 child pixels it covers.

    Parameters
    ----------
    children : list of 4 (value, weight) pairs or None
        Child ``c`` is tile ``4 n + c``; value and weight arrays (width, width).

    Returns
    -------
    value, weight : ndarray float32 (width, width)
        NaN / 0 where no child pixel is valid.
    """
    if len(children) != 4:
        raise ValueError(f"parent_tile needs 4 children (None for absent ones), got {len(children)}")
    value = np.full((width, width), np.nan, np.float32)
    weight = np.zeros((width, width), np.float32)
    for c, child in enumerate(children):
        if child is None:
            continue
        v, w = (np.asarray(a, np.float64) for a in child)
        if v.shape != (width, width) or w.shape != (width, width):
            raise ValueError(f"child tile {c}: shape {v.shape}/{w.shape}, expected ({width}, {width})")
        use = np.isfinite(v) & (w > 0)
        vw = np.where(use, v * w, 0.0)
        ww = np.where(use, w, 0.0)
        half = width // 2
        vw = vw.reshape(half, 2, half, 2).sum(axis=(1, 3))
        ww = ww.reshape(half, 2, half, 2).sum(axis=(1, 3))
        rows, cols = child_quadrant(c, width)
        with np.errstate(invalid="ignore", divide="ignore"):
            value[rows, cols] = np.where(ww > 0, vw / ww, np.nan)
        weight[rows, cols] = ww
    return value, weight


def display_cut(values: np.ndarray, low_percentile: float = 0.5, high_percentile: float = 99.8) -> tuple[float, float]:
    """Low and high display levels from percentiles of the finite values (a degenerate range widened)."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [low_percentile, high_percentile])
    if not high > low:
        high = low + max(abs(low), 1.0) * 1e-3
    return float(low), float(high)


def stretch(values: np.ndarray, low: float, high: float, *, softening: float = 0.1) -> np.ndarray:
    """Asinh stretch of ``values`` between ``low`` (0) and ``high`` (1), clipped; NaN stays NaN.

    ``softening``: the fraction of the range over which the stretch is linear.
    """
    if not high > low:
        raise ValueError(f"display range {low}..{high} is empty")
    t = (np.asarray(values, np.float64) - low) / (high - low)
    t = np.clip(t, 0.0, 1.0)
    return np.arcsinh(t / softening) / np.arcsinh(1.0 / softening)


def to_rgba8(levels: list, alpha: np.ndarray) -> np.ndarray:
    """An 8-bit RGBA (or grey + alpha) picture from 1 or 3 stretched planes in 0..1 and a boolean alpha.

    Returns an array (h, w, 2) for one plane or (h, w, 4) for three, upside down relative to the FITS
    tile (top row first, as PNG and JPEG store pictures).
    """
    planes = [np.nan_to_num(np.asarray(p, np.float64), nan=0.0) for p in levels]
    if len(planes) not in (1, 3):
        raise ValueError(f"to_rgba8 takes 1 or 3 planes, got {len(planes)}")
    bytes_ = [np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8) for p in planes]
    a = np.where(np.asarray(alpha, bool), 255, 0).astype(np.uint8)
    return np.flipud(np.stack(bytes_ + [a], axis=-1))
