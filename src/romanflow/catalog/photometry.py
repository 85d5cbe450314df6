"""Photometry on arrays: unit conversion, apertures, local background, PSF fits, PSF models.

Every function works on plain arrays (data and error in one flux unit per
pixel, normally nJy) plus pixel positions; nothing reads files or metadata.
The compiled work is done by kernels: :mod:`romanflow.kernels.annulus` (local
background) and :mod:`romanflow.kernels.psf_fit` (PSF fits).
"""

from __future__ import annotations

import numpy as np

from romanflow.catalog.schema import AB_ZEROPOINT_NJY
from romanflow.kernels.annulus import annulus_levels
from romanflow.kernels.psf_fit import fit_psf_sources

#: One steradian in square arcseconds.
ARCSEC2_PER_SR = (180.0 / np.pi * 3600.0) ** 2


def _photutils():
    import photutils

    photutils.future_column_names = True
    return photutils


# ---------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------


def njy_per_pixel_from_surface_brightness(pixel_area_sr: float) -> float:
    """Factor turning MJy/sr (L3 mosaics) into nJy per pixel: ``1e15 · Ω_pix``.

    Parameters
    ----------
    pixel_area_sr : float
        Solid angle of one pixel (sr).
    """
    return 1e15 * float(pixel_area_sr)


def njy_per_pixel_from_count_rate(conversion_megajanskys: float, pixel_area_sr: float) -> float:
    """Factor turning DN/s (L2 images) into nJy per pixel.

    Parameters
    ----------
    conversion_megajanskys : float
        Surface brightness of 1 DN/s (MJy/sr per DN/s), ``meta.photometry.conversion_megajanskys``.
    pixel_area_sr : float
        Solid angle of one pixel (sr), ``meta.photometry.pixel_area``.
    """
    return float(conversion_megajanskys) * 1e15 * float(pixel_area_sr)


def abmag(flux_njy, flux_err_njy=None):
    """AB magnitude ``-2.5 log10(f / nJy) + 31.4`` and its error; NaN where f <= 0."""
    flux = np.asarray(flux_njy, dtype=np.float64)
    positive = flux > 0
    mag = np.where(positive, -2.5 * np.log10(np.where(positive, flux, 1.0)) + AB_ZEROPOINT_NJY, np.nan)
    if flux_err_njy is None:
        return mag
    err = np.where(positive, 2.5 / np.log(10) * np.asarray(flux_err_njy) / np.where(positive, flux, 1.0), np.nan)
    return mag, err


# ---------------------------------------------------------------------------
# Apertures
# ---------------------------------------------------------------------------


def aperture_fluxes(data, err, x, y, radii_pix, mask=None):
    """Sums in circular apertures (exact pixel overlap).

    Parameters
    ----------
    data, err : ndarray (ny, nx)
        Image and 1-sigma error (flux per pixel).
    x, y : ndarray (n,)
        Aperture centres (pixels, 0-indexed).
    radii_pix : sequence of float
        Radii (pixels).
    mask : ndarray of bool, optional
        Pixels excluded from the sums.

    Returns
    -------
    flux, flux_err : ndarray (n, n_radii)
        Sums (flux) and their errors, NaN for an aperture entirely off the image.
    edge : ndarray of bool (n,)
        True if the largest aperture leaves the image or touches masked pixels.
    """
    _photutils()
    from photutils.aperture import CircularAperture, aperture_photometry

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = len(x)
    flux = np.full((n, len(radii_pix)), np.nan)
    flux_err = np.full((n, len(radii_pix)), np.nan)
    if n == 0:
        return flux, flux_err, np.zeros(0, bool)
    positions = np.column_stack([x, y])
    apertures = [CircularAperture(positions, r=r) for r in radii_pix]
    bad = ~np.isfinite(data) | ~np.isfinite(err)
    if mask is not None:
        bad = bad | mask
    table = aperture_photometry(np.where(bad, 0.0, data), apertures, error=np.where(bad, 0.0, err))
    for i in range(len(radii_pix)):
        flux[:, i] = np.asarray(table[f"aperture_sum_{i}"])
        flux_err[:, i] = np.asarray(table[f"aperture_sum_err_{i}"])
    rmax = max(radii_pix)
    ny, nx = data.shape
    edge = (x - rmax < -0.5) | (y - rmax < -0.5) | (x + rmax > nx - 0.5) | (y + rmax > ny - 0.5)
    if bad.any():
        touched = aperture_photometry(bad.astype(np.float32), apertures[int(np.argmax(radii_pix))])
        edge |= np.asarray(touched["aperture_sum"]) > 0
    return flux, flux_err, edge


def annulus_background(data, x, y, r_in_pix, r_out_pix, mask=None, *, sigma: float = 3.0, maxiters: int = 5):
    """Sigma-clipped median per pixel in a circular annulus, and its error.

    Pixels whose centres lie in ``r_in <= r < r_out`` and are not masked are
    clipped at ``sigma`` standard deviations about their median, up to
    ``maxiters`` times (as astropy's ``SigmaClip``).

    Returns
    -------
    level, level_err : ndarray (n,)
        Flux per pixel; the error is ``1.253 · std / sqrt(n_pixels)`` of the
        clipped pixels. NaN where the annulus has fewer than 3 usable pixels.
    """
    data = np.asarray(data, np.float64)
    bad = ~np.isfinite(data) if mask is None else (~np.isfinite(data) | np.asarray(mask, bool))
    return annulus_levels(data, bad, x, y, r_in_pix, r_out_pix, sigma, maxiters)


# ---------------------------------------------------------------------------
# PSF photometry
# ---------------------------------------------------------------------------


def gaussian_psf(fwhm_pix: float):
    """Pixel-integrated circular Gaussian PSF model (photutils ``CircularGaussianPRF``), unit flux."""
    _photutils()
    from photutils.psf import CircularGaussianPRF

    return CircularGaussianPRF(fwhm=float(fwhm_pix))


def psf_encircled_fraction(psf_model, radii_pix, size: int = 101) -> np.ndarray:
    """Fraction of a unit-flux PSF inside circular apertures centred on it (numerically)."""
    _photutils()
    from photutils.aperture import CircularAperture, aperture_photometry

    model = psf_model.copy()
    half = size // 2
    model.x_0 = half
    model.y_0 = half
    model.flux = 1.0
    yy, xx = np.mgrid[0:size, 0:size]
    image = model(xx, yy)
    total = image.sum()
    table = aperture_photometry(image, [CircularAperture((half, half), r=r) for r in radii_pix])
    return np.array([float(table[f"aperture_sum_{i}"][0]) for i in range(len(radii_pix))]) / total


def sampled_psf(psf_model, *, oversample: int = 4, half_size_pix: int = 8):
    """A unit-flux PSF model as ``(samples, oversample)`` for :func:`romanflow.kernels.psf_fit.fit_psf_sources`.

    A photutils ``ImagePSF`` gives its own samples; any other model (e.g.
    :func:`gaussian_psf`) is evaluated on a grid ``oversample`` times finer than
    the pixels, ``half_size_pix`` pixels each side of the source.
    """
    data = getattr(psf_model, "data", None)
    sampling = getattr(psf_model, "oversampling", None)
    if data is not None and sampling is not None:
        factors = np.atleast_1d(np.asarray(sampling, int))
        if factors.min() == factors.max() and np.ndim(data) == 2 and data.shape[0] == data.shape[1]:
            return np.asarray(data, np.float64), int(factors[0])
    model = psf_model.copy()
    model.x_0, model.y_0, model.flux = 0.0, 0.0, 1.0
    offsets = np.arange(-half_size_pix * oversample, half_size_pix * oversample + 1) / oversample
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    return np.asarray(model(xx, yy), np.float64), int(oversample)


def fit_psf_photometry(data, err, x, y, flux_guess, psf_model, *, fit_shape=(5, 5), mask=None, weight_err=None,
                       background_scale: float = 1.0):
    """Fit PSF position and flux of every source (:func:`romanflow.kernels.psf_fit.fit_psf_sources`).

    Parameters
    ----------
    data, err : ndarray (ny, nx)
        Background-subtracted image and its total 1-sigma error.
    x, y, flux_guess : ndarray (n,)
        Starting positions (pixels) and fluxes.
    psf_model : astropy model
        Unit-flux PSF (a photutils ``ImagePSF``, or :func:`gaussian_psf`).
    fit_shape : tuple of int
        Fit box (pixels, odd, square).
    mask : ndarray of bool, optional
        Pixels not to use.
    weight_err : ndarray (ny, nx), optional
        Error that weights the fit (``err`` when not given). Weights from the
        total error, whose Poisson part follows each pixel's own noisy signal,
        bias bright sources low; pass the background-only error to avoid it.
        Reported errors propagate ``err`` through the sandwich covariance.
    background_scale : float
        Actual / propagated noise of the background for a PSF-weighted sum; it
        scales the background's share of the errors.

    Returns
    -------
    dict of ndarray (n,)
        ``x, y, x_err, y_err, flux, flux_err, reduced_chi2, flags`` (bits of
        :mod:`romanflow.source_flags`, those of :data:`romanflow.kernels.psf_fit.FIT_FLAGS`).
    """
    samples, oversample, index = _fit_psf_samples(psf_model, data, x, y)
    return fit_psf_sources(data, err, x, y, samples, oversample, flux_guess=flux_guess, weight_err=weight_err,
                           mask=mask, half=int(fit_shape[0]) // 2, free_position=True,
                           background_scale=background_scale, psf_index=index)


def stamp_psf_fluxes(data, err, x, y, stamps, *, fit_half: int = 2, mask=None, weight_err=None,
                     background_scale: float = 1.0):
    """Linear PSF fluxes with one tabulated PSF image per source (e.g. a mosaic's own PSF).

    ``stamps[k]`` is source ``k``'s unit-flux image on the data's pixels, its centre
    element at pixel ``(round(x[k]), round(y[k]))`` (:func:`romanflow.catalog.mosaic_psf.mosaic_psf_stamps`).
    The fit is :func:`romanflow.kernels.psf_fit.fit_psf_sources` with fixed positions at
    those pixel centres, where its interpolation returns each stamp's own samples.

    Parameters
    ----------
    data, err, mask, weight_err, background_scale
        As for :func:`fit_psf_photometry`.
    x, y : ndarray (n,)
        Source positions (pixels).
    stamps : ndarray (n, m, m)
        Unit-flux images, m odd and at least ``2·fit_half + 5``; NaN (no coverage) counts as 0.
    fit_half : int
        Half-size of the fit box (pixels).

    Returns
    -------
    dict of ndarray (n,)
        ``flux``, ``flux_err``, ``reduced_chi2``, ``flags`` (as :func:`fit_psf_photometry`).
    """
    stamps = np.nan_to_num(np.asarray(stamps, np.float64), nan=0.0)
    if stamps.ndim != 3 or stamps.shape[1] != stamps.shape[2] or stamps.shape[1] < 2 * int(fit_half) + 5:
        raise ValueError(f"stamps {stamps.shape}: expected (n, m, m) with m >= {2 * int(fit_half) + 5}")
    n = stamps.shape[0]
    ix = np.floor(np.asarray(x, np.float64) + 0.5)
    iy = np.floor(np.asarray(y, np.float64) + 0.5)
    fit = fit_psf_sources(data, err, ix, iy, stamps, 1, weight_err=weight_err, mask=mask, half=int(fit_half),
                          free_position=False, background_scale=background_scale, psf_index=np.arange(n))
    return {k: fit[k] for k in ("flux", "flux_err", "reduced_chi2", "flags")}


def refine_positions_with_stamps(data, weight_err, x, y, stamps_at, *, fit_half: int = 2, mask=None,
                                 iterations: int = 2, step: float = 0.1):
    """Positions of point sources fitted with a PSF known only as images at given positions.

    ``stamps_at(x, y, half, centre)`` returns the unit-flux images (n, 2·half + 1, 2·half + 1)
    of sources at (x, y) centred on the pixels ``centre`` (e.g.
    :meth:`romanflow.catalog.mosaic_psf.MosaicPSF.stamps`). Each iteration takes the model's
    derivatives in x and y by finite differences of ``step`` pixels and solves the linearised
    weighted least squares for flux and shift in the ``(2·fit_half + 1)²`` box (weights
    ``1 / weight_err²``); shifts are capped at half a pixel per iteration.

    Returns
    -------
    x, y : ndarray (n,)
        Fitted positions (pixels); the starting ones where a box leaves the image or the
        system is singular.
    """
    data = np.asarray(data, np.float64)
    w = 1.0 / np.asarray(weight_err, np.float64) ** 2
    bad = ~np.isfinite(data) | ~np.isfinite(w)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    w = np.where(bad, 0.0, w)
    data = np.where(bad, 0.0, data)
    x = np.array(x, np.float64, copy=True)
    y = np.array(y, np.float64, copy=True)
    ny, nx = data.shape
    h = int(fit_half)
    offsets = np.arange(-h, h + 1)
    for _ in range(int(iterations)):
        cx, cy = np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64)
        inside = (cx - h >= 0) & (cy - h >= 0) & (cx + h < nx) & (cy + h < ny)
        if not inside.any():
            break
        k = np.nonzero(inside)[0]
        centre = (cx[k], cy[k])
        p0 = np.nan_to_num(stamps_at(x[k], y[k], h, centre))
        dx = (np.nan_to_num(stamps_at(x[k] + step, y[k], h, centre)) - p0) / step
        dy = (np.nan_to_num(stamps_at(x[k], y[k] + step, h, centre)) - p0) / step
        rows = cy[k][:, None, None] + offsets[None, :, None]
        cols = cx[k][:, None, None] + offsets[None, None, :]
        d, ww = data[rows, cols], w[rows, cols]
        design = np.stack([p0, dx, dy], axis=-1).reshape(len(k), -1, 3)
        d, ww = d.reshape(len(k), -1), ww.reshape(len(k), -1)
        normal = np.einsum("npi,np,npj->nij", design, ww, design)
        rhs = np.einsum("npi,np,np->ni", design, ww, d)
        ok = np.abs(np.linalg.det(normal)) > 0
        sol = np.zeros((len(k), 3))
        sol[ok] = np.linalg.solve(normal[ok], rhs[ok][..., None])[..., 0]
        ok &= sol[:, 0] > 0
        shift_x = np.clip(np.where(ok, sol[:, 1] / np.where(ok, sol[:, 0], 1.0), 0.0), -0.5, 0.5)
        shift_y = np.clip(np.where(ok, sol[:, 2] / np.where(ok, sol[:, 0], 1.0), 0.0), -0.5, 0.5)
        x[k] += shift_x
        y[k] += shift_y
    return x, y


def _fit_psf_samples(psf_model, data, x, y):
    """(effective PSF or stack, oversample, per-source index) for a fit: the library's PSF at each source's
    detector position when the model carries it (``field_psf``, an image in detector pixels), else one PSF."""
    field = getattr(psf_model, "field_psf", None)
    ny, nx = np.shape(data)
    if field is not None and ny == nx and nx <= 4088:
        stack, index = field.stack(np.asarray(x, float), np.asarray(y, float), offset=(4088 - nx) / 2.0)
        return stack, field.oversample, index
    samples, oversample = sampled_psf(psf_model)
    return samples, oversample, None


def forced_psf_fluxes(data, err, x, y, psf_model, *, fit_shape=(5, 5), mask=None, weight_err=None,
                      background_scale: float = 1.0):
    """Least-squares PSF flux with the position held fixed (linear, one parameter per source).

    ``F = Σ P d w / Σ P² w`` over the fit box with ``w = 1 / weight_err²``
    (``err`` when not given); the error propagates ``err`` (see
    :func:`fit_psf_photometry`).

    Parameters
    ----------
    data, err : ndarray (ny, nx)
        Background-subtracted image and its total 1-sigma error.
    x, y : ndarray (n,)
        Fixed source positions (pixels, 0-indexed).
    psf_model : astropy model
        Unit-flux PSF.
    weight_err : ndarray (ny, nx), optional
        Background-only error for the weights.
    background_scale : float
        Noise correlation factor of the background.

    Returns
    -------
    flux, flux_err, reduced_chi2 : ndarray (n,)
        NaN where the box has no usable pixel.
    """
    samples, oversample, index = _fit_psf_samples(psf_model, data, x, y)
    fit = fit_psf_sources(data, err, x, y, samples, oversample, weight_err=weight_err, mask=mask, psf_index=index,
                          half=int(fit_shape[0]) // 2, free_position=False, background_scale=background_scale)
    return fit["flux"], fit["flux_err"], fit["reduced_chi2"]


def _box_kernel_1d(width_samples: float) -> np.ndarray:
    """Normalised 1-D top-hat of a (possibly fractional) width in samples, centred on a sample."""
    half = width_samples / 2.0
    n = int(np.ceil(half - 0.5)) if half > 0.5 else 0
    offsets = np.arange(-n - 1, n + 2, dtype=np.float64)
    # overlap of each sample cell [k - 1/2, k + 1/2] with [-half, half]
    weights = np.clip(np.minimum(offsets + 0.5, half) - np.maximum(offsets - 0.5, -half), 0.0, None)
    weights = weights[weights > 0]
    return weights / weights.sum()


def resampled_effective_psf(native_epsf, native_oversample: int, native_scale_arcsec: float,
                            pixel_scale_arcsec: float, *, drop_size_arcsec: float | None = None,
                            detector_to_image=None, oversample: int = 4, size_pix: int = 41) -> np.ndarray:
    """Effective PSF of an image resampled (drizzled) from native detector pixels onto a new pixel grid.

    A drizzled point source is the native effective PSF (optics ⊗ native pixel)
    convolved with the drizzle drop (a square of ``drop_size_arcsec``, the
    native pixel times ``pixfrac``) and with the output pixel. With
    ``drop_size_arcsec=None`` the image is taken to be sampled directly
    (optics ⊗ native pixel only, rescaled).

    Parameters
    ----------
    native_epsf : ndarray (n, n)
        Native effective PSF, fraction of flux per native pixel, sampled
        ``native_oversample`` times per native pixel, source at the centre
        (:func:`romanflow.psf.psf_image`).
    native_oversample : int
        Samples per native pixel of ``native_epsf``.
    native_scale_arcsec, pixel_scale_arcsec : float
        Native and output pixel scales (arcsec).
    drop_size_arcsec : float or None
        Side of the drizzle drop (arcsec); None for no resampling kernel.
    detector_to_image : array_like (2, 2) or None
        Linear map of on-sky offsets from the detector's pixel axes (x, y) to
        the output image's pixel axes (arcsec per arcsec: the pixel Jacobian
        d(x_out, y_out)/d(x_det, y_det) times output/native pixel scale), i.e.
        the rotation (and parity flip) of the detector on the output grid.
        The optics and the drop follow the detector axes, the output pixel
        the image axes. None: the axes coincide.
    oversample : int
        Samples per output pixel of the result.
    size_pix : int
        Extent of the result in output pixels (odd).

    Returns
    -------
    ndarray (size_pix·oversample + 1, same)
        Fraction of a unit point source's flux in an output pixel whose centre
        is at that sample's offset from the source; samples every
        ``oversample`` sum to the flux fraction inside the extent (≈1).
    """
    from scipy.interpolate import RectBivariateSpline
    from scipy.signal import fftconvolve

    epsf = np.asarray(native_epsf, np.float64)
    fine = native_scale_arcsec / native_oversample  # arcsec per native sample
    n = epsf.shape[0]
    centre = (n - 1) / 2.0
    grid = (np.arange(n) - centre) * fine
    smooth = epsf
    if drop_size_arcsec is not None:
        # the drop is the native pixel shrunk by pixfrac: aligned with the detector axes
        kd = _box_kernel_1d(drop_size_arcsec / fine)
        smooth = fftconvolve(smooth, np.outer(kd, kd), mode="same")
    if detector_to_image is not None:
        # resample onto the image axes: value at image offset u is the detector-frame value at M^-1 u
        matrix = np.asarray(detector_to_image, np.float64)
        inverse = np.linalg.inv(matrix)
        native_spline = RectBivariateSpline(grid, grid, smooth, kx=3, ky=3)
        gy, gx = np.meshgrid(grid, grid, indexing="ij")
        dx = inverse[0, 0] * gx + inverse[0, 1] * gy
        dy = inverse[1, 0] * gx + inverse[1, 1] * gy
        inside = (np.abs(dx) <= grid[-1]) & (np.abs(dy) <= grid[-1])
        smooth = np.where(inside, native_spline.ev(dy, dx), 0.0) / abs(np.linalg.det(matrix))
    if drop_size_arcsec is not None:
        # the output pixel is aligned with the image axes
        kp = _box_kernel_1d(pixel_scale_arcsec / fine)
        smooth = fftconvolve(smooth, np.outer(kp, kp), mode="same")
    spline = RectBivariateSpline(grid, grid, smooth, kx=3, ky=3)
    m = size_pix * oversample + 1
    out_grid = (np.arange(m) - (m - 1) / 2.0) * (pixel_scale_arcsec / oversample)
    inside = np.abs(out_grid) <= grid[-1]
    values = np.zeros((m, m))
    values[np.ix_(inside, inside)] = spline(out_grid[inside], out_grid[inside])
    # fraction per native pixel -> fraction per output pixel
    values *= (pixel_scale_arcsec / native_scale_arcsec) ** 2
    return np.clip(values, 0.0, None)


def image_psf(epsf, oversample: int):
    """photutils ``ImagePSF`` (unit flux) from an effective PSF sampled ``oversample`` times per pixel.

    The samples are fractions of the *total* flux (not renormalised over the
    extent), so a fitted flux is the total flux including the wings beyond
    the fit box and beyond the extent.
    """
    _photutils()
    from photutils.psf import ImagePSF

    epsf = np.asarray(epsf, np.float64)
    return ImagePSF(epsf, oversampling=oversample)


def effective_psf_fwhm(epsf, oversample: int) -> float:
    """FWHM (pixels) of an effective PSF: diameter of the circle with the area above half maximum."""
    epsf = np.asarray(epsf, np.float64)
    area_samples = np.count_nonzero(epsf >= 0.5 * epsf.max())
    return float(2.0 * np.sqrt(area_samples / np.pi) / oversample)


def roman_psf_model(detectors, optical_element: str, pixel_scale_arcsec: float, *,
                    drop_size_arcsec: float | None = None, detector_to_image=None,
                    native_scale_arcsec=None, oversample: int = 4, size_pix: int = 41):
    """Unit-flux PSF model of a WFI image from the PSF library (:func:`romanflow.psf.psf_model`,
    each detector's effective PSF at its centre, G2V).

    Parameters
    ----------
    detectors : sequence of str or int
        Detectors whose pixels make the image; their effective PSFs are averaged.
    optical_element : str
        Imaging filter (``'F158'``).
    pixel_scale_arcsec : float
        Pixel scale of the image (arcsec).
    drop_size_arcsec : float or None
        Drizzle drop side for a resampled image, given for the nominal 0.11″
        pixel (0.11 × pixfrac) and scaled with ``native_scale_arcsec``; None for
        an image in native detector pixels.
    detector_to_image : array_like (2, 2), or sequence of them (one per detector), or None
        Orientation of each detector's axes on the image grid
        (:func:`resampled_effective_psf`); None when the image is in detector axes.
    native_scale_arcsec : float, or sequence of float (one per detector), optional
        Local sky size of each detector's pixel (arcsec); the nominal 0.11″ by
        default. galsim.roman's PSF is drawn on the nominal pixel, so it is a PSF
        in detector pixels: an image in detector pixels takes
        ``native_scale_arcsec = pixel_scale_arcsec``.
    oversample, size_pix : int
        Sampling (per image pixel) and extent (image pixels) of the model.

    Returns
    -------
    model : photutils ``ImagePSF``
        For an image in one detector's own pixels it also carries ``field_psf``
        (:class:`romanflow.psf.PSFModel`): PSF fits then use the library's PSF
        at each source's detector position.
    fwhm_pix : float
        FWHM of the model (image pixels).
    """
    from romanflow.detector import PIXEL_SCALE

    native_oversample = 8
    native_size = int(np.ceil(size_pix * pixel_scale_arcsec / PIXEL_SCALE)) + 8
    detectors = list(detectors)
    if detector_to_image is None or np.ndim(detector_to_image) == 2:
        matrices = [detector_to_image] * len(detectors)
    else:
        matrices = list(detector_to_image)
        if len(matrices) != len(detectors):
            raise ValueError(f"{len(matrices)} orientation matrices for {len(detectors)} detectors")
    if native_scale_arcsec is None or np.ndim(native_scale_arcsec) == 0:
        scales = [PIXEL_SCALE if native_scale_arcsec is None else float(native_scale_arcsec)] * len(detectors)
    else:
        scales = [float(v) for v in native_scale_arcsec]
        if len(scales) != len(detectors):
            raise ValueError(f"{len(scales)} native pixel scales for {len(detectors)} detectors")
    stack = [
        resampled_effective_psf(_library_epsf(d, optical_element, native_oversample, native_size),
                                native_oversample, native, pixel_scale_arcsec,
                                drop_size_arcsec=None if drop_size_arcsec is None else drop_size_arcsec * native / PIXEL_SCALE,
                                detector_to_image=m, oversample=oversample, size_pix=size_pix)
        for d, m, native in zip(detectors, matrices, scales)
    ]
    epsf = np.mean(stack, axis=0)
    model = image_psf(epsf, oversample)
    if len(detectors) == 1 and drop_size_arcsec is None and matrices[0] is None \
            and abs(scales[0] - pixel_scale_arcsec) < 1e-9:
        # an image in one detector's own pixels: fits use the library's PSF at each source's position
        from romanflow.psf import psf_model

        model.field_psf = psf_model(detectors[0], optical_element)
    return model, effective_psf_fwhm(epsf, oversample)


def _library_epsf(detector, optical_element: str, oversample: int, size_native: int) -> np.ndarray:
    """Library effective PSF at the detector centre, ``size_native * oversample + 1`` samples per side."""
    from romanflow.psf import MODEL_OVERSAMPLE, psf_model

    model = psf_model(detector, optical_element)
    centre = 4088 / 2.0 - 0.5
    if oversample == MODEL_OVERSAMPLE:
        epsf = np.array(model.epsf(centre, centre))
    else:
        epsf = model.image(centre, centre, oversample=oversample, size=2 * model.half * oversample + 1)
    n = size_native * oversample + 1
    m = epsf.shape[0]
    if n <= m:
        cut = (m - n) // 2
        return epsf[cut:cut + n, cut:cut + n]
    pad = (n - m) // 2
    return np.pad(epsf, pad)
