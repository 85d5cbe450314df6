"""Outlier rejection between overlapping inputs, with a record of what was rejected.

1. Each input is drizzled alone onto the output grid (sky-subtracted); pixels
   whose single-image weight is below ``maskpt`` times that image's median
   weight are ignored. Each single image is written to its own file (the box it
   covers), and the per-pixel median is formed block of output rows by block of
   rows read back from those files, so memory does not grow with the number of
   inputs (:func:`median_of_singles`).
2. The per-pixel median is blotted back to every input.
3. A pixel is an outlier when ``|in - blot| > scale2·deriv + snr2·err`` and it
   or one of its 8 neighbours has ``|in - blot| > scale1·deriv + snr1·err``
   (``snr = (5.0, 4.0)``, ``scale = (1.2, 0.7)``), where ``deriv`` is the largest
   absolute difference between a blotted pixel and its neighbours.
4. Flagged pixels get ``OUTLIER | DO_NOT_USE`` before the final combination,
   and one row per flagged pixel is written to a Parquet table beside the mosaic
   (:func:`write_outlier_table`, :func:`read_outlier_table`).
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from romanflow.errors import RomanflowError
from romanflow.mosaic.resample import DrizzleAccumulator, as_rate_image, good_pixel_mask, sky_level

OUTLIER_COLUMNS = {
    "input": (None, "input L2 file name"),
    "x": ("pix", "input pixel column (0-based)"),
    "y": ("pix", "input pixel row (0-based)"),
    "ra": ("deg", "ICRS right ascension of the pixel centre"),
    "dec": ("deg", "ICRS declination of the pixel centre"),
    "value": ("DN / s", "input pixel value"),
    "blot": ("DN / s", "median of the other inputs blotted to this pixel, input sky added"),
    "threshold": ("DN / s", "rejection threshold scale2*deriv + snr2*err"),
    "reason": (None, "'primary': above the snr1/scale1 threshold; 'neighbour': above snr2/scale2 next to one"),
}


# --------------------------------------------------------------------- kernels
def abs_derivative(image: np.ndarray) -> np.ndarray:
    """Largest absolute difference between each pixel and its 4 nearest neighbours."""
    out = np.zeros_like(image)
    d = np.abs(np.diff(image, axis=1))
    out[:, 1:] = np.maximum(out[:, 1:], d)
    out[:, :-1] = np.maximum(out[:, :-1], d)
    d = np.abs(np.diff(image, axis=0))
    out[1:, :] = np.maximum(out[1:, :], d)
    out[:-1, :] = np.maximum(out[:-1, :], d)
    return out


def flag_outliers(data, blot, err, valid, snr=(5.0, 4.0), scale=(1.2, 0.7)):
    """Outlier masks of one input against its blotted median.

    Parameters
    ----------
    data, blot, err : ndarray
        Sky-matched input, blotted median and 1-sigma error (same units).
    valid : ndarray of bool
        Pixels that may be tested.
    snr, scale : (float, float)
        Primary and neighbour thresholds.

    Returns
    -------
    flagged, primary : ndarray of bool
        Final outliers and the pixels above the primary threshold.
    threshold : ndarray
        The neighbour threshold ``scale[1]*deriv + snr[1]*err``.
    """
    from scipy import ndimage

    deriv = abs_derivative(blot)
    diff = np.abs(data - blot)
    with np.errstate(invalid="ignore"):
        primary = valid & (diff > scale[0] * deriv + snr[0] * err)
        threshold = scale[1] * deriv + snr[1] * err
        secondary = valid & (diff > threshold)
    near_primary = ndimage.binary_dilation(primary, structure=np.ones((3, 3), bool))
    return secondary & near_primary, primary, threshold


# --------------------------------------------------------------------- driver
@dataclass
class OutlierResult:
    """Outcome of outlier detection.

    Attributes
    ----------
    flags : dict
        ``{input name: (y, x) index arrays}`` of rejected pixels.
    table : astropy.table.Table
        One row per rejected pixel (see :data:`OUTLIER_COLUMNS`).
    sky_levels : dict
        ``{input name: sky level}`` (DN/s per input pixel) measured on the way.
    """

    flags: dict
    table: object
    sky_levels: dict = field(default_factory=dict)


def _input_name(image, k):
    return str(image.meta.get("filename", f"input{k}"))


def detect_outliers(inputs: Sequence, out_wcs, *, snr=(5.0, 4.0), scale=(1.2, 0.7), maskpt: float = 0.7,
                    kernel: str = "square", pixfrac: float = 1.0, weight_type: str = "ivm",
                    sky_match: bool = True, workdir=None, pixmap_step: int = 32,
                    median_block_bytes: int = 2**26) -> OutlierResult:
    """Find outliers by comparing every input with the median of all of them.

    Parameters
    ----------
    inputs : sequence of paths or RateImage
        Read twice, one at a time (paths keep memory flat).
    out_wcs : astropy.wcs.WCS
        Grid on which the median is formed.
    snr, scale : (float, float)
        Primary and neighbour thresholds.
    maskpt : float
        Single-image pixels with weight below ``maskpt`` x median weight are ignored.
    workdir : path, optional
        Where the single images are kept on disk (a temporary folder by default).
    median_block_bytes : int
        Input values held at once while forming the median (bytes); memory does not grow
        with the number of inputs beyond this.
    """
    from drizzle.resample import blot_image

    if isinstance(inputs, (str, Path)) or not isinstance(inputs, Sequence):
        raise RomanflowError("outlier detection reads its inputs twice: pass a list of L2 paths or images")
    n = len(inputs)
    if n == 0:
        raise RomanflowError("no inputs for outlier detection")
    ny, nx = out_wcs.array_shape
    tmpdir = Path(tempfile.mkdtemp(prefix="romanflow_outliers_", dir=workdir))
    try:
        sky_levels, names, singles = {}, [], []
        # pass 1: each input alone on the grid, written to its own file (its covered box only)
        for k, item in enumerate(inputs):
            image = as_rate_image(item)
            name = _input_name(image, k)
            names.append(name)
            sky = sky_level(image.data, good_pixel_mask(image.dq)) if sky_match else 0.0
            sky = sky if np.isfinite(sky) else 0.0
            sky_levels[name] = sky
            acc = DrizzleAccumulator(out_wcs, kernel=kernel, pixfrac=pixfrac, weight_type=weight_type, units="rate",
                                     with_variance=False, with_context=False, pixmap_step=pixmap_step)
            acc.add(image, sky=sky)
            del image, item
            single = acc.result(add_back_sky=False)
            del acc
            singles.append(_write_single(single["data"], single["weight"], maskpt, tmpdir / f"single{k}.f32"))
            del single
            gc.collect()  # the image's WCS objects hold reference cycles: free its arrays before the next one
        median = median_of_singles(singles, (ny, nx), block_bytes=median_block_bytes)
        has_median = np.isfinite(median)
        median_filled = np.where(has_median, median, 0).astype(np.float32)
        coverage = has_median.astype(np.float32)
        del median, has_median

        # pass 2: blot back and compare
        flags, rows_out = {}, {key: [] for key in OUTLIER_COLUMNS}
        for k, item in enumerate(inputs):
            image = as_rate_image(item)
            name = names[k]
            acc = DrizzleAccumulator(out_wcs, kernel=kernel, pixfrac=pixfrac, weight_type=weight_type, units="rate",
                                     with_variance=False, with_context=False, pixmap_step=pixmap_step)
            pm = acc.pixmap(image)
            blot = blot_image(median_filled, pm.pixmap, iscale=1.0) * pm.area_ratio
            blot_cov = blot_image(coverage, pm.pixmap, iscale=1.0, interp="linear")
            sky = sky_levels[name]
            data = np.asarray(image.data, np.float32) - np.float32(sky)
            err = np.asarray(image.err, np.float32)
            valid = good_pixel_mask(image.dq) & np.isfinite(data) & np.isfinite(err) & (blot_cov > 0.999)
            flagged, primary, threshold = flag_outliers(data, blot, err, valid, snr=snr, scale=scale)
            yy, xx = np.nonzero(flagged)
            flags[name] = (yy, xx)
            if yy.size:
                from romanflow.mosaic.pixmap import pixel_to_world

                ra, dec = pixel_to_world(image.wcs, xx.astype(float), yy.astype(float))
                rows_out["input"].extend([name] * yy.size)
                rows_out["x"].append(xx)
                rows_out["y"].append(yy)
                rows_out["ra"].append(ra)
                rows_out["dec"].append(dec)
                rows_out["value"].append(image.data[yy, xx])
                rows_out["blot"].append(blot[yy, xx] + sky)
                rows_out["threshold"].append(threshold[yy, xx])
                rows_out["reason"].extend(np.where(primary[yy, xx], "primary", "neighbour").tolist())
            del image, item, pm, blot, blot_cov, data, err, valid, flagged, primary, threshold
            gc.collect()
        table = _outlier_table(rows_out)
        return OutlierResult(flags=flags, table=table, sky_levels=sky_levels)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------- the median, streamed from disk
@dataclass
class SingleImage:
    """One input drizzled alone, kept on disk: the rows ``y0:y1`` and columns ``x0:x1`` it covers."""

    path: Path
    y0: int
    y1: int
    x0: int
    x1: int


def _write_single(data, weight, maskpt, path) -> SingleImage | None:
    """Store the covered box of a single-input image (NaN below ``maskpt`` x its median weight) as raw float32."""
    covered = weight > 0
    if not covered.any():
        return None
    rows = np.flatnonzero(covered.any(axis=1))
    cols = np.flatnonzero(covered.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    cut = maskpt * np.median(weight[covered])
    box = (slice(y0, y1), slice(x0, x1))
    values = np.where(weight[box] >= cut, data[box], np.float32(np.nan)).astype(np.float32)
    values.tofile(path)
    return SingleImage(Path(path), y0, y1, x0, x1)


def nanmedian_axis0(stack: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN (NaN where every value is NaN); equal to ``np.nanmedian(stack, axis=0)``."""
    ordered = np.sort(stack, axis=0)  # NaN sort last
    count = np.isfinite(ordered).sum(axis=0)
    lo = np.clip((count - 1) // 2, 0, None)[None]
    hi = (count // 2)[None].clip(max=stack.shape[0] - 1)
    low = np.take_along_axis(ordered, lo, axis=0)[0]
    high = np.take_along_axis(ordered, hi, axis=0)[0]
    out = ((low.astype(np.float64) + high) / 2).astype(stack.dtype)
    out[count == 0] = np.nan
    return out


def median_of_singles(singles, shape, block_bytes: int = 2**26) -> np.ndarray:
    """Per-pixel median (NaN-ignoring) of single-input images stored by :func:`_write_single`.

    Read in blocks of output rows, each block holding at most ~``block_bytes`` of input values,
    so memory does not grow with the number of inputs.
    """
    ny, nx = shape
    median = np.full((ny, nx), np.nan, np.float32)
    singles = [s for s in singles if s is not None]
    if not singles:
        return median
    rows = max(1, int(block_bytes // (4 * len(singles) * nx)))
    for r0 in range(0, ny, rows):
        r1 = min(r0 + rows, ny)
        members = [s for s in singles if s.y0 < r1 and s.y1 > r0]
        if not members:
            continue
        block = np.full((len(members), r1 - r0, nx), np.nan, np.float32)
        for j, s in enumerate(members):
            a, b = max(r0, s.y0), min(r1, s.y1)
            width = s.x1 - s.x0
            values = np.fromfile(s.path, dtype=np.float32, count=(b - a) * width, offset=(a - s.y0) * width * 4)
            block[j, a - r0:b - r0, s.x0:s.x1] = values.reshape(b - a, width)
        median[r0:r1] = nanmedian_axis0(block)
    return median


def _outlier_table(rows):
    from astropy.table import Column, Table

    dtypes = {"x": np.int32, "y": np.int32, "ra": np.float64, "dec": np.float64, "value": np.float32,
              "blot": np.float32, "threshold": np.float32}
    cols = []
    for key, (unit, description) in OUTLIER_COLUMNS.items():
        values = rows[key]
        if key in ("input", "reason"):
            data = np.array(values, dtype=str) if values else np.array([], dtype="U1")
        else:
            data = np.concatenate(values).astype(dtypes[key]) if values else np.array([], dtype=dtypes[key])
        cols.append(Column(data, name=key, unit=unit, description=description))
    return Table(cols, meta={"description": "pixels rejected by romanflow outlier detection"})


def write_outlier_table(table, path) -> Path:
    """Write the record of rejected pixels as Parquet (atomically)."""
    from romanflow.formats import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        table.write(tmp, format="parquet")
    return path


def read_outlier_table(path):
    """Read a record written by :func:`write_outlier_table` (units and descriptions restored)."""
    from astropy.table import Table

    return Table.read(path, format="parquet")


def outlier_table_path(mosaic_path) -> Path:
    """Where the outlier record of a mosaic lives: ``<stem>_outliers.parquet`` beside it."""
    mosaic_path = Path(mosaic_path)
    return mosaic_path.with_name(mosaic_path.stem + "_outliers.parquet")
