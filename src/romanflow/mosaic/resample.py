"""Resample L2 rate images onto a sky-cell grid with drizzle.

Inputs are consumed one at a time from any iterable (file paths are read when
their turn comes), so memory holds one input plus the output accumulators,
whatever the number of inputs.

Units and flux: L2 pixels are count rates per detector pixel (DN/s).

- ``units='surface_brightness'`` (L3 products): the flux step first turns each
  input into surface brightness, MJy/sr = DN/s × ``meta.photometry.conversion_megajanskys``
  × Ω_nominal / Ω_pixel (variances × the square of that factor), which is then
  resampled as is: the mosaic is in MJy/sr, as official L3 products are. The
  conversion constant is defined for the nominal pixel area
  (``meta.photometry.pixel_area``); a distorted WFI pixel covers Ω_pixel, a few
  percent less or more, which the pixel map's Jacobian gives for every pixel.
  Without that term a point source on the mosaic would carry the wrong flux by
  the area ratio (about -2% near the WFI01 centre).
- ``units='rate'``: each input pixel value is divided by the local number of
  output pixels per input pixel (the pixel map's Jacobian, which carries the
  geometric distortion) before it is drizzled with ``iscale=1``. For the
  undistorted case this is the constant ``iscale = (out_scale / in_scale)**2``;
  the per-pixel form keeps total flux exact across the detector. Output values
  are DN/s per output pixel; variances follow with the square of the same factor.

Weights: ``'ivm'`` uses the inverse of each input's median read-noise variance
(in output units; rebuilt from ``err`` when ``var_rnoise`` is missing or zero), one
value per input so that the weight never follows the signal; ``'exptime'`` the
exposure time. Variances are drizzled with squared weights (drizzle's ``data2``), which
is exact per-pixel error propagation for the square kernel.

Sky: each input's level is measured with sigma-clipped statistics and
subtracted before combination; the mean level of all inputs is added back, so
inputs are matched to a common level and the mosaic keeps the background.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from romanflow import dq as dqflags
from romanflow.errors import InputFileError, RomanflowError
from romanflow.exposure import RateImage, get_meta
from romanflow.geometry import local_pixel_scale
from romanflow.mosaic.pixmap import PixmapResult, fast_pixmap

KERNELS = ("square", "point", "turbo", "gaussian", "lanczos2", "lanczos3")
WEIGHT_TYPES = ("ivm", "exptime")

logger = logging.getLogger(__name__)


class NoUsablePixelsError(RomanflowError):
    """No input pixel can go into the output: every input is empty, or none lands on the output grid."""


#: Inputs with at least this many pixels are collected (gc) once added; small stamps are not.
_COLLECT_PIXELS = 1_000_000


# --------------------------------------------------------------------- kernels
def sky_level(data: np.ndarray, good: np.ndarray, sigma: float = 3.0, maxiters: int = 10,
              subsample: int = 4) -> float:
    """Sigma-clipped median of the good pixels of an image (same units as ``data``).

    Every ``subsample``-th pixel in each direction is used, which is plenty for a
    level and keeps the cost small for 4088x4088 inputs.
    """
    sample = data[::subsample, ::subsample][good[::subsample, ::subsample]]
    sample = sample[np.isfinite(sample)].astype(np.float64)
    if sample.size == 0:
        return float("nan")
    for _ in range(maxiters):
        med = np.median(sample)
        mad = 1.4826 * np.median(np.abs(sample - med))
        if mad == 0:
            break
        keep = np.abs(sample - med) < sigma * mad
        if keep.all():
            break
        sample = sample[keep]
    return float(np.median(sample))


def good_pixel_mask(dq: np.ndarray, bad_bits: int = dqflags.DO_NOT_USE) -> np.ndarray:
    """True where none of ``bad_bits`` is set."""
    return (np.asarray(dq).astype(np.uint32) & np.uint32(bad_bits)) == 0


def rnoise_variance(image: RateImage) -> np.ndarray:
    """Read-noise variance, rebuilt from ``err`` where missing or not positive ((DN/s)^2)."""
    var = None if image.var_rnoise is None else np.asarray(image.var_rnoise, dtype=np.float32)
    if var is not None and np.all(np.isfinite(var) & (var > 0) | ~np.isfinite(image.data)):
        return var
    rebuilt = np.asarray(image.err, dtype=np.float32) ** 2 - np.asarray(image.var_poisson, dtype=np.float32)
    if image.var_flat is not None:
        rebuilt = rebuilt - np.asarray(image.var_flat, dtype=np.float32)
    if var is None:
        return rebuilt
    return np.where(np.isfinite(var) & (var > 0), var, rebuilt)


def photometric_conversion(image: RateImage) -> float:
    """MJy/sr per DN/s of an L2 image (``meta.photometry.conversion_megajanskys``)."""
    value = get_meta(image.meta, "photometry.conversion_megajanskys")
    if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        name = image.meta.get("filename", "input")
        raise RomanflowError(f"{name}: no photometric conversion (meta.photometry.conversion_megajanskys); "
                             "run photom, or resample with units='rate'")
    return float(value)


def nominal_pixel_area(image: RateImage) -> float:
    """Solid angle (sr) the photometric conversion refers to (``meta.photometry.pixel_area``).

    Falls back to the nominal 0.11\" square WFI pixel when the keyword is absent.
    """
    from romanflow.detector import PIXEL_SCALE

    value = get_meta(image.meta, "photometry.pixel_area")
    if isinstance(value, (int, float)) and np.isfinite(value) and value > 0:
        return float(value)
    return float(np.deg2rad(PIXEL_SCALE / 3600.0) ** 2)


def _time(meta: dict, key: str):
    """An astropy Time from metadata, or None."""
    from astropy.time import Time

    value = get_meta(meta, key)
    if value is None or isinstance(value, str) and value in ("", "?"):
        return None
    try:
        return Time(value)
    except (ValueError, TypeError):
        return None


def exposure_time(meta: dict) -> float:
    """Exposure time (s) from metadata; 1 when absent."""
    for key in ("exposure.exposure_time", "exposure.effective_exposure_time", "exposure.measurement_time"):
        value = get_meta(meta, key)
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return 1.0


# --------------------------------------------------------------------- accumulator
@dataclass
class ResampledInput:
    """What one input contributed (for the record)."""

    name: str
    sky: float
    exptime: float
    pixmap_step: int
    pixmap_error: float
    area_ratio: float
    start_time: object = None  # astropy Time of the exposure's start, when known
    end_time: object = None


class DrizzleAccumulator:
    """Running weighted combination of inputs on one output grid.

    Parameters
    ----------
    out_wcs : astropy.wcs.WCS
        Output grid, ``array_shape`` set.
    kernel : str
        Drizzle kernel (``square`` default).
    pixfrac : float
        Drop size as a fraction of the input pixel.
    weight_type : {'ivm', 'exptime'}
    units : {'rate', 'surface_brightness'}
        ``'rate'`` (DN/s per pixel) divides by the local area ratio; see module notes.
    with_variance, with_context : bool
        Also drizzle the variance arrays / keep the context image.
    pixmap_step, pixmap_tolerance : int, float
        Pixel-map node spacing (input px) and error bound (output px).
    """

    def __init__(self, out_wcs, kernel="square", pixfrac=1.0, weight_type="ivm", units="rate",
                 with_variance=True, with_context=True, pixmap_step=32, pixmap_tolerance=0.01):
        from drizzle.resample import Drizzle

        if kernel not in KERNELS:
            raise RomanflowError(f"unknown drizzle kernel '{kernel}' (choose from {', '.join(KERNELS)})")
        if weight_type not in WEIGHT_TYPES:
            raise RomanflowError(f"unknown weight type '{weight_type}' (choose from {', '.join(WEIGHT_TYPES)})")
        if not 0 < pixfrac <= 1:
            raise RomanflowError(f"pixfrac must be in (0, 1], got {pixfrac}")
        if units not in ("rate", "surface_brightness"):
            raise RomanflowError(f"unknown units '{units}'")
        if out_wcs.array_shape is None:
            raise RomanflowError("the output WCS has no array_shape")
        self.out_wcs = out_wcs
        self.shape = tuple(int(v) for v in out_wcs.array_shape)
        self.kernel, self.pixfrac, self.weight_type, self.units = kernel, float(pixfrac), weight_type, units
        self.pixmap_step, self.pixmap_tolerance = int(pixmap_step), float(pixmap_tolerance)
        self.with_variance = with_variance
        out_img2 = [np.zeros(self.shape, np.float32) for _ in range(3)] if with_variance else None
        self._driz = Drizzle(kernel=kernel, fillval=np.nan, out_shape=self.shape, out_img2=out_img2,
                             disable_ctx=not with_context)
        self.exposure_time = np.zeros(self.shape, np.float32)
        self.inputs: list[ResampledInput] = []
        self._sky_out = []
        ny, nx = self.shape
        centre_scale = local_pixel_scale(out_wcs, [(nx - 1) / 2.0], [(ny - 1) / 2.0])[0]  # arcsec
        self.out_pixel_area = float(np.deg2rad(centre_scale / 3600.0) ** 2)  # sr

    def pixmap(self, image: RateImage) -> PixmapResult:
        if image.wcs is None:
            raise RomanflowError(f"{image.meta.get('filename', 'input')}: no WCS (run assign_wcs first)")
        return fast_pixmap(image.wcs, image.data.shape, self.out_wcs, step=self.pixmap_step,
                           tolerance=self.pixmap_tolerance, area=True)

    def add(self, image: RateImage, sky: float = 0.0, pixmap: PixmapResult | None = None,
            bad_bits: int = dqflags.DO_NOT_USE) -> ResampledInput | None:
        """Drizzle one input (its ``sky`` level subtracted, input units) into the accumulators.

        Returns None, adding nothing, when the input has no usable pixel (every pixel
        non-finite, flagged with ``bad_bits`` or of zero weight).
        """
        if not (good_pixel_mask(image.dq, bad_bits) & np.isfinite(image.data)).any():
            return None
        pm = pixmap if pixmap is not None else self.pixmap(image)
        good = good_pixel_mask(image.dq, bad_bits) & np.isfinite(image.data)
        # area: output pixels per input pixel, so that the input pixel covers area × Ω_out on the sky
        area = pm.area_ratio
        if self.units == "rate":
            factor = 1.0
        else:
            factor = photometric_conversion(image) * nominal_pixel_area(image) / self.out_pixel_area
        inv_area = (factor / area).astype(np.float32)
        data = ((np.asarray(image.data, np.float32) - np.float32(sky)) * inv_area)
        exptime = exposure_time(image.meta)
        if self.weight_type == "ivm":
            var_rn = rnoise_variance(image) * inv_area**2
            usable = good & np.isfinite(var_rn) & (var_rn > 0)
            # One inverse variance per input (its median read-noise variance): a per-pixel weight
            # would follow the signal (the read-noise variance of an optimally weighted ramp grows
            # with the pixel's rate), down-weight star cores against their neighbours and lose flux.
            level = float(np.median(var_rn[usable])) if usable.any() else np.inf
            weight = np.where(usable, np.float32(1.0 / level), np.float32(0)).astype(np.float32)
        else:
            weight = np.where(good, np.float32(exptime), np.float32(0)).astype(np.float32)
        if not (weight > 0).any():
            return None
        data = np.where(weight > 0, data, 0.0).astype(np.float32)
        data2 = None
        if self.with_variance:
            inv_area2 = inv_area**2
            data2 = [np.where(weight > 0, var_rn if self.weight_type == "ivm" else rnoise_variance(image) * inv_area2,
                              0).astype(np.float32),
                     (np.asarray(image.var_poisson, np.float32) * inv_area2),
                     (np.zeros(image.data.shape, np.float32) if image.var_flat is None
                      else np.asarray(image.var_flat, np.float32) * inv_area2)]
            data2 = [np.where(weight > 0, np.nan_to_num(d), 0).astype(np.float32) for d in data2]
        # bounding box of this input on the output, to update the exposure-time map cheaply
        xs, ys = pm.pixmap[..., 0], pm.pixmap[..., 1]
        x0 = max(int(np.floor(np.nanmin(xs))) - 2, 0)
        x1 = min(int(np.ceil(np.nanmax(xs))) + 3, self.shape[1])
        y0 = max(int(np.floor(np.nanmin(ys))) - 2, 0)
        y1 = min(int(np.ceil(np.nanmax(ys))) + 3, self.shape[0])
        before = self._driz.out_wht[y0:y1, x0:x1].copy() if (x1 > x0 and y1 > y0) else None
        # output pixel size in input pixels, which sizes the turbo/gaussian/lanczos kernels
        scale_ratio = float(np.sqrt(np.median(pm.area_ratio[::16, ::16]))) ** -1 if pm.area_ratio is not None else 1.0
        self._driz.add_image(data, exptime=exptime, pixmap=pm.pixmap, data2=data2, weight_map=weight,
                             pixfrac=self.pixfrac, in_units="cps", iscale=1.0, pixel_scale_ratio=scale_ratio)
        if before is not None:
            covered = self._driz.out_wht[y0:y1, x0:x1] > before
            self.exposure_time[y0:y1, x0:x1] += np.where(covered, np.float32(exptime), np.float32(0))
        med_area = float(np.median(area[::16, ::16]))
        self._sky_out.append(sky * factor / med_area)
        record = ResampledInput(str(image.meta.get("filename", f"input{len(self.inputs)}")), float(sky), exptime,
                                pm.step, pm.max_error, med_area, _time(image.meta, "exposure.start_time"),
                                _time(image.meta, "exposure.end_time"))
        self.inputs.append(record)
        return record

    @property
    def weight(self) -> np.ndarray:
        return self._driz.out_wht

    @property
    def covered(self) -> bool:
        """True when some output pixel has received input."""
        return bool((self._driz.out_wht > 0).any())

    def result(self, add_back_sky: bool = True) -> dict:
        """Output arrays: data, err, weight, context, exposure_time, var_rnoise, var_poisson, var_flat."""
        level = float(np.mean(self._sky_out)) if (add_back_sky and self._sky_out) else 0.0
        wht = self._driz.out_wht
        covered = wht > 0
        data = np.where(covered, self._driz.out_img + np.float32(level), np.nan).astype(np.float32)
        out = {"data": data, "weight": wht.astype(np.float32), "exposure_time": self.exposure_time,
               "sky_level": level}
        if self.with_variance:
            names = ("var_rnoise", "var_poisson", "var_flat")
            for name, arr in zip(names, self._driz.out_img2):
                out[name] = np.where(covered, arr, np.nan).astype(np.float32)
            out["err"] = np.sqrt(out["var_rnoise"] + out["var_poisson"] + out["var_flat"]).astype(np.float32)
        ctx = self._driz.out_ctx
        out["context"] = (np.zeros(self.shape + (1,), np.uint32) if ctx is None
                          else np.ascontiguousarray(np.moveaxis(ctx, 0, -1)).view(np.uint32))
        return out


# --------------------------------------------------------------------- driver
def as_rate_image(item) -> RateImage:
    """A :class:`RateImage` from an in-memory image or an L2 file path."""
    if isinstance(item, RateImage):
        return item
    if isinstance(item, (str, Path)):
        from romanflow.formats import read_l2

        image = read_l2(item)
        if image.wcs is None:
            raise InputFileError(item, "L2 product has no WCS (meta.wcs is null): run assign_wcs first")
        return image
    raise RomanflowError(f"cannot resample a {type(item).__name__}: expected an L2 path or a RateImage")


@dataclass
class MosaicProduct:
    """An L3 mosaic in memory.

    Attributes
    ----------
    arrays : dict
        ``data``, ``err``, ``weight``, ``context``, ``exposure_time``, ``var_rnoise``,
        ``var_poisson``, ``var_flat``: MJy/sr (or DN/s per output pixel with
        ``units='rate'``), variances in the squares.
    wcs : astropy.wcs.WCS
        The output grid.
    inputs : list of ResampledInput
    meta : dict
        Resampling parameters and provenance.
    """

    arrays: dict
    wcs: object
    inputs: list
    meta: dict = field(default_factory=dict)

    def __getattr__(self, name):
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)


def resample(inputs: Iterable, out_wcs, *, kernel: str = "square", pixfrac: float = 1.0, weight_type: str = "ivm",
             sky_match: bool = True, units: str = "rate", bad_bits: int = dqflags.DO_NOT_USE,
             extra_flags: dict | None = None, pixmap_step: int = 32, pixmap_tolerance: float = 0.01,
             sky_levels: dict | None = None) -> MosaicProduct:
    """Drizzle L2 inputs onto one output grid, one input at a time.

    Parameters
    ----------
    inputs : iterable of RateImage or path
        Consumed once, in order; a generator keeps only one input alive.
    out_wcs : astropy.wcs.WCS
        Output grid (e.g. :func:`~romanflow.mosaic.skycells.skycell_wcs` or a cutout of it).
    kernel, pixfrac, weight_type, units
        See :class:`DrizzleAccumulator`.
    sky_match : bool
        Measure and match each input's sky level.
    bad_bits : int
        DQ bits that exclude a pixel.
    extra_flags : dict, optional
        ``{filename: (y_indices, x_indices)}`` pixels to set OUTLIER|DO_NOT_USE before combination.
    sky_levels : dict, optional
        ``{filename: level}`` to use instead of measuring.

    Returns
    -------
    MosaicProduct
    """
    acc = DrizzleAccumulator(out_wcs, kernel=kernel, pixfrac=pixfrac, weight_type=weight_type, units=units,
                             pixmap_step=pixmap_step, pixmap_tolerance=pixmap_tolerance)
    n = 0
    left_out: list[tuple[int, str]] = []  # (index, name) of inputs without a usable pixel
    for item in inputs:
        image = as_rate_image(item)
        name = str(image.meta.get("filename", f"input{n}"))
        label = os.fspath(item) if isinstance(item, (str, os.PathLike)) else name
        if extra_flags and name in extra_flags:
            yy, xx = extra_flags[name]
            image.dq = np.array(image.dq, dtype=np.uint32, copy=True)
            image.dq[yy, xx] |= np.uint32(dqflags.OUTLIER | dqflags.DO_NOT_USE)
        if sky_levels and name in sky_levels:
            sky = float(sky_levels[name])
        elif sky_match:
            sky = sky_level(image.data, good_pixel_mask(image.dq, bad_bits))
        else:
            sky = 0.0
        if acc.add(image, sky=sky if np.isfinite(sky) else 0.0, bad_bits=bad_bits) is None:
            left_out.append((n, label))
        n += 1
        large = np.size(image.data) >= _COLLECT_PIXELS
        del image, item
        if large:  # the image's WCS objects hold reference cycles: free its arrays before the next one
            gc.collect()
    if n == 0:
        raise RomanflowError("no inputs to resample")
    if len(left_out) == n:
        raise NoUsablePixelsError(f"none of the {n} input(s) has a usable pixel (all NaN or flagged DO_NOT_USE)")
    if not acc.covered:
        raise NoUsablePixelsError(f"no usable pixel of the {n} input(s) falls on the output grid "
                                  f"({out_wcs.array_shape[1]}x{out_wcs.array_shape[0]} pixels): the grid misses the data")
    for _, label in left_out:
        logger.warning(f"{label}: no usable pixel (every pixel NaN, flagged DO_NOT_USE or without weight): "
                       "left out of the mosaic")
    arrays = acc.result(add_back_sky=sky_match or bool(sky_levels))
    meta = {"kernel": kernel, "pixfrac": float(pixfrac), "weight_type": weight_type, "units": units,
            "sky_level": arrays.pop("sky_level"), "n_inputs": n - len(left_out),
            "left_out": [k for k, _ in left_out]}
    return MosaicProduct(arrays=arrays, wcs=out_wcs, inputs=acc.inputs, meta=meta)


# --------------------------------------------------------------------- L3 file
def _gwcs_from_celestial(wcs):
    """A gwcs equivalent of a TAN astropy WCS (the L3 schema stores a gwcs)."""
    from astropy import coordinates, units as u
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf
    from gwcs.wcs import WCS

    crpix = wcs.wcs.crpix
    cd = wcs.pixel_scale_matrix
    forward = ((models.Shift(-(crpix[0] - 1)) & models.Shift(-(crpix[1] - 1)))
               | models.AffineTransformation2D(matrix=cd, translation=[0.0, 0.0])
               | models.Pix2Sky_TAN()
               | models.RotateNative2Celestial(wcs.wcs.crval[0], wcs.wcs.crval[1], 180.0))
    detector = cf.Frame2D(name="detector", axes_names=("x", "y"), unit=(u.pix, u.pix))
    world = cf.CelestialFrame(reference_frame=coordinates.ICRS(), name="world", axes_names=("ra", "dec"),
                              unit=(u.deg, u.deg))
    out = WCS([(detector, forward), (world, None)])
    ny, nx = wcs.array_shape
    out.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    out.array_shape = (ny, nx)
    return out


def member_references(inputs, mosaic_path) -> list[str]:
    """How an L3 file names its members (``meta.resample.members``), one per input.

    An input read from a file is named by its path relative to the mosaic's
    folder (POSIX separators), so that readers of the mosaic find the
    calibrated exposures wherever the two live, as long as they move together;
    an image given in memory by its ``meta.filename``.
    """
    import os

    folder = os.path.abspath(Path(mosaic_path).parent)
    out = []
    for k, item in enumerate(inputs):
        if isinstance(item, (str, os.PathLike)):
            out.append(Path(os.path.relpath(os.path.abspath(item), folder)).as_posix())
        else:
            out.append(str(item.meta.get("filename", f"input{k}")))
    return out


def write_mosaic(product: MosaicProduct, path, *, skycell: str | None = None, members=None,
                 optical_element: str | None = None, outlier_detection: bool = False):
    """Write an L3 ``MosaicModel`` (validated by roman_datamodels), atomically.

    ``members``: what ``meta.resample.members`` records for each input
    (:func:`member_references`); the inputs' file names when not given.
    """
    import roman_datamodels.datamodels as rdm

    from romanflow.formats import atomic_path

    path = Path(path)
    ny, nx = product.data.shape
    defaults = {"meta": {"filename": path.name, "product_type": "l3"}}
    if optical_element:
        defaults["meta"]["instrument"] = {"optical_element": optical_element}
    model = rdm.MosaicModel.create_fake_data(shape=(ny, nx), defaults=defaults)
    a = product.arrays
    model.data = a["data"].astype(np.float32)
    model.err = a["err"].astype(np.float32)
    model.weight = a["weight"].astype(np.float32)
    model.var_rnoise = a["var_rnoise"].astype(np.float32)
    model.var_poisson = a["var_poisson"].astype(np.float32)
    model.var_flat = a["var_flat"].astype(np.float32)
    model.context = a["context"].astype(np.uint32)
    model["exposure_time"] = a["exposure_time"].astype(np.float32)
    model.meta.wcs = _gwcs_from_celestial(product.wcs)
    if product.meta.get("units") == "surface_brightness":
        model.meta.cal_step["flux"] = "COMPLETE"  # data in MJy/sr
    rs = model.meta.resample
    rs.pixfrac = float(product.meta.get("pixfrac", 1.0))
    rs.weight_type = str(product.meta.get("weight_type", "ivm"))
    rs.good_bits = "~DO_NOT_USE"
    rs.pointings = len(product.inputs)
    rs.members = [str(m) for m in (members or [i.name for i in product.inputs])]
    rs.pixel_scale_ratio = float(np.sqrt(np.median([i.area_ratio for i in product.inputs]))) ** -1 \
        if product.inputs else 1.0
    wi = model.meta.wcsinfo
    ra_c, dec_c = product.wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    wi.ra, wi.dec = float(ra_c), float(dec_c)
    wi.ra_ref, wi.dec_ref = float(product.wcs.wcs.crval[0]), float(product.wcs.wcs.crval[1])
    wi.x_ref, wi.y_ref = float(product.wcs.wcs.crpix[0] - 1), float(product.wcs.wcs.crpix[1] - 1)
    scale = float(abs(product.wcs.wcs.cdelt[0]) * 3600.0) if product.wcs.wcs.has_cd() is False else float(
        np.sqrt(abs(np.linalg.det(product.wcs.pixel_scale_matrix))) * 3600.0)
    wi.pixel_scale = wi.pixel_scale_ref = scale / 3600.0
    wi.image_shape = [int(ny), int(nx)]
    wi.orientation = wi.orientation_ref = 0.0
    wi.skycell_name = skycell or "none"
    from romanflow.geometry import image_s_region

    wi.s_region = image_s_region(product.wcs, (ny, nx))
    model.meta.coadd_info.exposure_time = float(np.nanmax(a["exposure_time"])) if a["exposure_time"].size else 0.0
    starts = [i.start_time for i in product.inputs if i.start_time is not None]
    ends = [i.end_time for i in product.inputs if i.end_time is not None]
    if starts and ends and len(starts) == len(ends):
        from astropy.time import Time

        info = model.meta.coadd_info
        info.time_first, info.time_last = min(starts), max(ends)
        mean = Time(float(np.mean([(s.mjd + e.mjd) / 2 for s, e in zip(starts, ends)])), format="mjd", scale="utc")
        mean.format = "isot"
        info.time_mean = mean
    from romanflow.version import __version__

    model.meta.calibration_software_name = "romanflow"
    model.meta.calibration_software_version = __version__
    covered = np.asarray(a["weight"]) > 0
    stats = model.meta.statistics
    stats.good_pixel_fraction = float(covered.mean()) if covered.size else 0.0
    if covered.any():
        stats.image_median = float(np.nanmedian(a["data"][covered]))
        stats.image_rms = float(np.nanstd(a["data"][covered]))
    for step in ("skymatch", "resample"):
        model.meta.cal_step[step] = "COMPLETE"
    if outlier_detection:
        model.meta.cal_step["outlier_detection"] = "COMPLETE"
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path
