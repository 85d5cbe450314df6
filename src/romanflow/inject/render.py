"""Render injection sources on an image's pixel grid with the image's own PSF.

Stars are the effective PSF interpolated at each pixel
(:func:`romanflow.kernels.injection.point_source_stamp`); galaxies are the
simulator's profiles (:func:`romanflow.simulate.render.galaxy_profile`), laid
onto the pixel grid through the image's local WCS Jacobian and convolved with
the same effective PSF, drawn without a second pixel (the effective PSF
includes it). The PSF comes from :class:`PSFProvider`: the PSF API at each
source's detector position on an L2 image, the catalog's PSF model on a mosaic.

Flux convention: the effective PSF's samples are fractions of the *total* flux
(:mod:`romanflow.kernels.epsf`), so a stamp carries the flux within its box,
``stamp_flux`` (the far wings beyond it, a percent or so, are not injected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from romanflow.kernels.injection import point_source_stamp, stamp_origin

#: Largest half-size of a galaxy stamp (pixels).
MAX_GALAXY_HALF = 64


@dataclass
class ImagePSF:
    """An image's effective PSF: samples (fraction of total flux per image pixel) and sampling."""

    epsf: np.ndarray
    oversample: int

    def galsim_kernel(self):
        """The effective PSF as a galsim ``InterpolatedImage`` in pixel units (made once)."""
        kernel = self.__dict__.get("_kernel")
        if kernel is None:
            import galsim

            kernel = galsim.InterpolatedImage(galsim.Image(np.ascontiguousarray(self.epsf / self.oversample**2),
                                                           scale=1.0 / self.oversample),
                                              x_interpolant="lanczos3", normalization="flux")
            self.__dict__["_kernel"] = kernel
        return kernel

    @property
    def half(self) -> int:
        """Half-size (pixels) of the box the samples cover for cubic interpolation."""
        return int(((self.epsf.shape[0] - 1) / 2 - 1) // self.oversample)


#: Grid (detector pixels) on which an L2 image's position-dependent PSF is taken: sources share the PSF
#: of their grid cell's centre (the library's PSF varies by well under 1% of its peak over 256 pixels).
PSF_GRID_PIX = 256
#: Sampling and extent of the PSFs drawn (per pixel; pixels), as the catalog's PSF model.
PSF_OVERSAMPLE = 4
PSF_SIZE_PIX = 41


class PSFProvider:
    """The one place where injection takes a PSF, for one image.

    * An L2 image whose detector is known: the PSF API's effective PSF at the
      source's position on the detector (:func:`romanflow.psf.psf_image`), on a
      :data:`PSF_GRID_PIX` grid.
    * A mosaic whose members are known: stars are the mosaic's own PSF at their
      position (:attr:`romanflow.catalog.band_image.BandImage.mosaic_psf`, the
      members' PSFs drizzled as the data were, :meth:`star_stamps`), the image the
      catalog's fits on the mosaic expect; galaxies, whose extent smooths the
      drizzle's pixel-phase pattern, are convolved with the catalog's PSF model.
    * Otherwise (a Gaussian asked for with ``psf_fwhm_arcsec``, a mosaic without
      its members): the catalog's PSF model of the image
      (:attr:`romanflow.catalog.band_image.BandImage.psf_model`: the drizzled
      mix of a mosaic's detectors), or a Gaussian of the image's FWHM.
    """

    def __init__(self, band_image, *, detector=None, science_size: int | None = None, gaussian: bool = False):
        self.band_image = band_image
        self.detector = None if gaussian else detector
        self.mosaic_psf = None if gaussian or detector is not None else getattr(band_image, "mosaic_psf", None)
        self.offset = 0.0
        if self.detector is not None and science_size is not None:
            from romanflow.geometry import patch_offset

            self.offset = patch_offset(int(science_size))
        self._cache = {}
        self._fixed = None

    def _image_model(self) -> ImagePSF:
        from romanflow.catalog.photometry import gaussian_psf, sampled_psf

        if self._fixed is None:
            model = self.band_image.psf_model
            if model is None:
                from romanflow.geometry import local_pixel_scale

                ny, nx = self.band_image.data.shape
                scale = float(local_pixel_scale(self.band_image.wcs, [nx / 2], [ny / 2])[0])
                model = gaussian_psf((self.band_image.psf_fwhm_arcsec or 0.15) / scale)
            samples, oversample = sampled_psf(model, oversample=PSF_OVERSAMPLE, half_size_pix=PSF_SIZE_PIX // 2)
            self._fixed = ImagePSF(np.ascontiguousarray(samples, np.float64), int(oversample))
        return self._fixed

    def star_stamps(self, x, y) -> tuple[np.ndarray | None, int]:
        """Unit-flux images ``(n, 2·half + 1, 2·half + 1)`` of stars at image pixels (x, y), centred on
        the nearest pixels, from the mosaic's own PSF, and ``half`` (that of the image's PSF model);
        ``(None, 0)`` when the image has no PSF of its own."""
        if self.mosaic_psf is None or len(x) == 0:
            return None, 0
        half = self._image_model().half
        stamps = self.mosaic_psf.stamps(np.asarray(x, float), np.asarray(y, float), half=half)
        return np.nan_to_num(stamps, nan=0.0), half

    def at(self, x: float, y: float) -> ImagePSF:
        """The effective PSF for a source at image pixel (x, y)."""
        if self.detector is None:
            return self._image_model()
        from romanflow.detector import N_PIX_SCIENCE
        from romanflow.psf import psf_image

        gx = float(np.clip((np.floor((x + self.offset) / PSF_GRID_PIX) + 0.5) * PSF_GRID_PIX, 0, N_PIX_SCIENCE - 1))
        gy = float(np.clip((np.floor((y + self.offset) / PSF_GRID_PIX) + 0.5) * PSF_GRID_PIX, 0, N_PIX_SCIENCE - 1))
        key = (gx, gy)
        if key not in self._cache:
            samples = psf_image(self.detector, self.band_image.band, gx, gy, oversample=PSF_OVERSAMPLE,
                                size=PSF_SIZE_PIX * PSF_OVERSAMPLE + 1)
            self._cache[key] = ImagePSF(np.ascontiguousarray(samples, np.float64), PSF_OVERSAMPLE)
        return self._cache[key]


def sky_to_pixel_jacobian(wcs, ra, dec, step_arcsec: float = 0.05) -> np.ndarray:
    """d(x, y)/d(east, north) (pixels per arcsec) at sky positions: (n, 2, 2), columns east and north."""
    ra, dec = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    n = ra.size
    d = step_arcsec / 3600.0
    cosd = np.maximum(np.cos(np.radians(dec)), 1e-8)
    ras = np.concatenate([ra, ra + d / cosd, ra])
    decs = np.concatenate([dec, dec, dec + d])
    x, y = (np.asarray(v, float) for v in wcs.world_to_pixel_values(ras, decs))
    jac = np.empty((n, 2, 2))
    jac[:, 0, 0], jac[:, 0, 1] = x[n:2 * n] - x[:n], x[2 * n:] - x[:n]
    jac[:, 1, 0], jac[:, 1, 1] = y[n:2 * n] - y[:n], y[2 * n:] - y[:n]
    return jac / step_arcsec


_SERSIC_CACHE: dict = {}


def _unit_profile(row):
    """The simulator's galaxy profile (:func:`romanflow.simulate.render.galaxy_profile`) at unit flux.

    A Sersic galaxy is the cached unit-size profile of its index (the simulator rounds indices to
    0.05) dilated to its size, so galsim sizes the Fourier transform of each index once.
    """
    from romanflow.simulate.render import galaxy_profile

    if row["type"] != "sersic":
        return galaxy_profile(row, 1.0)
    n = round(float(min(max(row["sersic_n"], 0.3), 6.2)) * 20.0) / 20.0
    base = _SERSIC_CACHE.get(n)
    if base is None:
        base = _SERSIC_CACHE[n] = galaxy_profile({"type": "sersic", "sersic_n": n, "half_light_radius": 1.0}, 1.0)
    return base.dilate(float(row["half_light_radius"]))


def galaxy_stamp(row, flux, x, y, psf: ImagePSF, jacobian):
    """Stamp of one galaxy (flux per pixel) and its half-size.

    ``row``: shape columns (scene schema; sizes in arcsec, position angle east of north);
    ``jacobian``: :func:`sky_to_pixel_jacobian` at the galaxy.
    """
    import galsim

    profile = _unit_profile(row)
    q = float(row["axis_ratio"])
    if q < 1.0:
        # major axis at position angle θ (east of north) lies at 90° − θ from the east axis
        profile = profile.shear(q=q, beta=(90.0 - float(row["position_angle"])) * galsim.degrees)
    j = np.asarray(jacobian, float)
    profile = profile.transform(j[0, 0], j[0, 1], j[1, 0], j[1, 1]).withFlux(float(flux))
    scale_pix = math.sqrt(abs(np.linalg.det(j)))
    hlr_pix = float(row["half_light_radius"]) * scale_pix
    half = int(min(max(psf.half, math.ceil(6 * hlr_pix + 4)), MAX_GALAXY_HALF))
    conv = galsim.Convolve(profile, psf.galsim_kernel())
    ix, iy = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
    stamp = galsim.ImageD(2 * half + 1, 2 * half + 1, scale=1.0)
    conv.drawImage(stamp, method="no_pixel", offset=(x - ix, y - iy))
    return np.clip(stamp.array, 0.0, None), half


def render_sources(sources: pd.DataFrame, x, y, flux, psf: PSFProvider, wcs) -> tuple[list, np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """Stamps of every source.

    Parameters
    ----------
    sources : DataFrame
        Rows of an injection catalog (``type``, shape columns, ``ra``, ``dec``).
    x, y : ndarray
        Pixel positions on the image.
    flux : ndarray
        Total flux of each source (image unit per pixel, summed).
    psf : PSFProvider
    wcs : object
        The image's WCS (galaxy orientation).

    Returns
    -------
    stamps : list of ndarray
    x0, y0 : ndarray of int
        Lower-left pixel of each stamp.
    half : ndarray of int
        Half-size of each stamp.
    """
    stamps, x0s, y0s, halves = [], [], [], []
    kinds = sources["type"].to_numpy()
    rows = sources.to_dict("records")
    galaxies = np.nonzero(kinds != "star")[0]
    jacobians = dict(zip(galaxies, sky_to_pixel_jacobian(wcs, sources["ra"].to_numpy(float)[galaxies],
                                                         sources["dec"].to_numpy(float)[galaxies])))
    stars = np.nonzero(kinds == "star")[0]
    drizzled, star_half = psf.star_stamps(np.asarray(x, float)[stars], np.asarray(y, float)[stars])
    drizzled = dict(zip(stars, drizzled)) if drizzled is not None else {}
    for k in range(len(rows)):
        local = psf.at(float(x[k]), float(y[k]))
        if kinds[k] == "star" and k in drizzled:
            half = star_half
            stamp = float(flux[k]) * drizzled[k]
        elif kinds[k] == "star":
            half = local.half
            stamp = point_source_stamp(local.epsf, local.oversample, float(x[k]), float(y[k]), float(flux[k]), half)
        else:
            stamp, half = galaxy_stamp(rows[k], float(flux[k]), float(x[k]), float(y[k]), local, jacobians[k])
        sx, sy = stamp_origin(x[k], y[k], half)
        stamps.append(stamp)
        x0s.append(int(sx))
        y0s.append(int(sy))
        halves.append(half)
    return stamps, np.asarray(x0s, np.int64), np.asarray(y0s, np.int64), np.asarray(halves, np.int64)
