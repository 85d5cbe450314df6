"""Background estimation, detection images and source segmentation (pure array kernels)."""

from __future__ import annotations

import numpy as np


def _photutils():
    import photutils

    photutils.future_column_names = True
    return photutils


#: Largest percentage of masked pixels a background box may have, tried in turn until some boxes qualify
#: (photutils' default first; rows or columns of bad pixels can push every box past it).
BACKGROUND_EXCLUDE_PERCENTILES = (10.0, 50.0, 90.0)


def estimate_background(data, *, box_size: int = 64, filter_size: int = 3, mask=None):
    """Smooth background and its RMS from sigma-clipped medians in boxes.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Image (any flux unit per pixel).
    box_size : int
        Box side (pixels); clipped to the image size.
    filter_size : int
        Median filter over the box grid (boxes).
    mask : ndarray of bool, optional
        Pixels to ignore (sources, bad pixels).

    Returns
    -------
    background, background_rms : ndarray (ny, nx)
        Same unit as ``data``.
    """
    _photutils()
    from photutils.background import Background2D, MedianBackground

    from romanflow.errors import RomanflowError

    box = (min(box_size, data.shape[0]), min(box_size, data.shape[1]))
    for exclude_percentile in BACKGROUND_EXCLUDE_PERCENTILES:
        try:
            bkg = Background2D(data, box, filter_size=(filter_size, filter_size), bkg_estimator=MedianBackground(),
                               mask=mask, exclude_percentile=exclude_percentile)
        except ValueError:  # every box has too many masked pixels: accept boxes with fewer usable ones
            continue
        return np.asarray(bkg.background, dtype=np.float32), np.asarray(bkg.background_rms, dtype=np.float32)
    usable = data.size if mask is None else int(np.count_nonzero(~np.asarray(mask, bool)))
    raise RomanflowError(f"too few usable pixels for a background estimate ({usable} of {data.size}; every "
                         f"{box[0]}x{box[1]} box has more than {BACKGROUND_EXCLUDE_PERCENTILES[-1]:.0f}% masked)")


def gaussian_kernel(fwhm_pix: float) -> np.ndarray:
    """Normalised 2-D Gaussian smoothing kernel of the given FWHM (pixels), odd size ≈ 4 FWHM."""
    size = int(2 * np.ceil(2.0 * fwhm_pix) + 1)
    half = size // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    sigma = fwhm_pix / (2 * np.sqrt(2 * np.log(2)))
    kernel = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def inverse_variance_detection_image(images, errors):
    """Inverse-variance weighted mean of co-registered images.

    Parameters
    ----------
    images, errors : sequence of ndarray (ny, nx)
        Images in one common flux unit per pixel, and their 1-sigma errors.
        Pixels with non-finite or non-positive errors get zero weight.

    Returns
    -------
    detection, detection_err : ndarray (ny, nx)
        ``Σ w_b img_b / Σ w_b`` and ``1 / sqrt(Σ w_b)`` with ``w_b = 1/err_b²``
        (NaN-free: uncovered pixels have value 0 and error inf).
    """
    weight_sum = np.zeros(images[0].shape, np.float64)
    weighted = np.zeros(images[0].shape, np.float64)
    for image, err in zip(images, errors):
        err = np.asarray(err, np.float64)
        good = np.isfinite(err) & (err > 0) & np.isfinite(image)
        w = np.where(good, 1.0 / np.where(good, err, 1.0) ** 2, 0.0)
        weight_sum += w
        weighted += w * np.where(good, image, 0.0)
    covered = weight_sum > 0
    detection = np.where(covered, weighted / np.where(covered, weight_sum, 1.0), 0.0)
    detection_err = np.where(covered, 1.0 / np.sqrt(np.where(covered, weight_sum, 1.0)), np.inf)
    return detection.astype(np.float32), detection_err.astype(np.float32)


def smoothed_noise_scale(convolved, noise, usable, *, min_pixels: int = 1000) -> float:
    """Ratio of the actual to the propagated noise of a smoothed image.

    Resampled (drizzled) images have positively correlated neighbouring
    pixels, so ``sqrt(err² ⊛ kernel²)``, which assumes independent pixels,
    underestimates the noise of the smoothed image. The actual noise is
    measured robustly from the significance map ``convolved / noise``: the
    distance between its median and its 15.87th percentile, i.e. from the
    lower half of the distribution, which sources (positive) hardly touch.

    Parameters
    ----------
    convolved, noise : ndarray (ny, nx)
        Smoothed image and its propagated 1-sigma noise (same unit).
    usable : ndarray of bool (ny, nx)
        Pixels to measure on (covered, away from edges).
    min_pixels : int
        Below this many usable pixels the scale is 1 (no measurement).

    Returns
    -------
    float
        Factor (dimensionless) to multiply the propagated noise by; 1 for
        uncorrelated noise with honest errors.
    """
    sel = usable & np.isfinite(convolved) & np.isfinite(noise) & (noise > 0)
    if sel.sum() < min_pixels:
        return 1.0
    significance = convolved[sel] / noise[sel]
    median = np.median(significance)
    lower = np.percentile(significance, 100 * 0.158655)
    scale = float(median - lower)
    return scale if np.isfinite(scale) and scale > 0 else 1.0


def disk_kernel(radius_pix: float) -> np.ndarray:
    """Circular top-hat of unit height with exact pixel overlap: its correlation with an image gives aperture sums."""
    _photutils()
    from photutils.aperture import CircularAperture

    half = int(np.ceil(radius_pix + 0.5))
    mask = CircularAperture((half, half), r=float(radius_pix)).to_mask(method="exact")
    return np.asarray(mask.to_image((2 * half + 1, 2 * half + 1)), np.float64)


def noise_correlation(data, err, bad=None, *, max_lag: int = 8) -> np.ndarray:
    """Correlation of the normalised noise ``data / err`` between pixels up to ``max_lag`` apart.

    Measured over pixel pairs that are both usable (not ``bad``, which should
    include the detected sources, and within 5 robust sigma), so crowded images
    give the noise's correlation rather than the sources'.

    Parameters
    ----------
    data, err : ndarray (ny, nx)
        Background-subtracted image and its 1-sigma error (same unit).
    bad : ndarray of bool, optional
        Pixels to leave out (unusable pixels and sources).
    max_lag : int
        Largest lag (pixels) along each axis.

    Returns
    -------
    ndarray (2·max_lag + 1, 2·max_lag + 1)
        ``ρ[L + dy, L + dx] = <r(x) r(x + d)>``; the centre is the variance of
        ``data / err`` (1 for honest errors), neighbours the covariances.
    """
    from scipy.fft import irfft2, rfft2

    unusable = ~np.isfinite(data) | ~np.isfinite(err) | (err <= 0)
    if bad is not None:
        unusable |= bad
    r = np.where(unusable, 0.0, np.asarray(data, np.float64) / np.where(unusable, 1.0, err))
    values = r[~unusable]
    if values.size:
        spread = 1.4826 * np.median(np.abs(values - np.median(values)))
        unusable |= np.abs(r) > 5.0 * max(spread, 1e-30)
    r = np.where(unusable, 0.0, r)
    m = (~unusable).astype(np.float64)
    L = int(max_lag)
    shape = (r.shape[0] + L, r.shape[1] + L)  # zero padding: no wrap-around up to lag L
    fr, fm = rfft2(r, shape), rfft2(m, shape)
    num = irfft2(fr * np.conj(fr), shape)
    den = irfft2(fm * np.conj(fm), shape)
    lags = np.r_[0:L + 1, -L:0]
    num = np.roll(num[np.ix_(lags, lags)], L, axis=(0, 1))
    den = np.roll(den[np.ix_(lags, lags)], L, axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0.5, num / np.maximum(den, 1.0), 0.0)
    return rho


def kernel_noise_scale(data, err, kernel, bad=None, *, correlation=None, max_lag: int = 8) -> float:
    """Actual / propagated noise of ``data`` correlated with ``kernel`` (aperture sums, PSF-like fits).

    The propagated noise ``sqrt(Σ k² err²)`` assumes independent pixels with
    honest errors; on resampled images neighbouring pixels are correlated and
    it is too small. With ρ the noise correlation measured on the image
    (:func:`noise_correlation`) and ``A(d) = Σ_x k(x) k(x + d)`` the kernel's
    autocorrelation, the factor is ``sqrt(Σ_d ρ(d) A(d) / A(0))``.

    Parameters
    ----------
    data, err : ndarray (ny, nx)
        Background-subtracted image and its 1-sigma error (same unit).
    kernel : ndarray (k, k)
        Weights (a normalised Gaussian, or :func:`disk_kernel`).
    bad : ndarray of bool, optional
        Pixels to leave out of the measurement (unusable pixels, sources).
    correlation : ndarray, optional
        :func:`noise_correlation` already measured (then ``data`` is not used).
    max_lag : int
        Largest lag measured (pixels); correlations further apart are taken as 0.

    Returns
    -------
    float
        Factor (dimensionless) to multiply errors propagated with independent
        pixels by; ≈1 for uncorrelated noise with honest errors.
    """
    from scipy.signal import fftconvolve

    rho = noise_correlation(data, err, bad, max_lag=max_lag) if correlation is None else np.asarray(correlation)
    L = rho.shape[0] // 2
    kernel = np.asarray(kernel, np.float64)
    auto = fftconvolve(kernel, kernel[::-1, ::-1], mode="full")
    cy, cx = (auto.shape[0] - 1) // 2, (auto.shape[1] - 1) // 2
    hy, hx = min(L, cy), min(L, cx)
    window = auto[cy - hy:cy + hy + 1, cx - hx:cx + hx + 1]
    rho = rho[L - hy:L + hy + 1, L - hx:L + hx + 1]
    ratio = float(np.sum(rho * window) / auto[cy, cx])
    return float(np.sqrt(ratio)) if np.isfinite(ratio) and ratio > 0 else 1.0


def segment_sources(
    data,
    err,
    *,
    kernel_fwhm_pix: float,
    snr_threshold: float = 5.0,
    n_pixels: int = 5,
    deblend: bool = True,
    mask=None,
    noise_scale: float | None = None,
    edge_margin_pix: int | None = None,
):
    """Detect sources as connected pixels above a significance threshold in the smoothed image.

    The background-subtracted image is convolved with a Gaussian matched to
    the PSF; the threshold is ``snr_threshold`` times the noise of the
    smoothed image: the propagated ``sqrt(err² ⊛ kernel²)`` times a factor
    measured on the image itself (:func:`smoothed_noise_scale`) that corrects
    for pixel-to-pixel noise correlations, so the threshold is a true
    significance also on resampled images. Nothing is detected within
    ``edge_margin_pix`` of uncovered or masked pixels.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Background-subtracted image.
    err : ndarray (ny, nx)
        1-sigma error of ``data`` (same unit); inf where not covered.
    kernel_fwhm_pix : float
        FWHM of the smoothing kernel (pixels), normally the PSF FWHM.
    snr_threshold : float
        Detection threshold in sigma of the smoothed image.
    n_pixels : int
        Minimum number of connected pixels above threshold.
    deblend : bool
        Split blended sources (photutils ``deblend_sources``; needs scikit-image).
    mask : ndarray of bool, optional
        Pixels never to detect on.
    noise_scale : float, optional
        Actual / propagated noise of the smoothed image; measured when not given.
    edge_margin_pix : int, optional
        Width (pixels) of the band along the coverage edge where nothing is
        detected; by default the kernel half-width plus one FWHM.

    Returns
    -------
    segm : photutils.segmentation.SegmentationImage or None
        None when nothing is detected.
    convolved : ndarray (ny, nx)
        The smoothed image.
    noise_scale : float
        The factor applied to the propagated noise.
    """
    from scipy import ndimage

    _photutils()
    from photutils.segmentation import deblend_sources, detect_sources

    kernel = gaussian_kernel(kernel_fwhm_pix)
    bad = ~np.isfinite(data) | ~np.isfinite(err)
    if mask is not None:
        bad |= mask
    clean = np.where(bad, 0.0, data).astype(np.float32)
    var = np.where(bad, 0.0, np.asarray(err, np.float32) ** 2)
    convolved = ndimage.convolve(clean, kernel.astype(np.float32), mode="constant")
    noise = np.sqrt(ndimage.convolve(var, (kernel**2).astype(np.float32), mode="constant"))
    # Only pixels far enough from the coverage edge (and from masked pixels) may hold detections.
    if edge_margin_pix is None:
        edge_margin_pix = kernel.shape[0] // 2 + int(np.ceil(kernel_fwhm_pix))
    usable = ~bad
    if edge_margin_pix > 0:
        distance = ndimage.distance_transform_edt(np.pad(usable, 1, constant_values=False))[1:-1, 1:-1]
        usable = distance > edge_margin_pix
    if noise_scale is None:
        noise_scale = smoothed_noise_scale(convolved, noise, usable)
    if not usable.any():  # every pixel masked or too close to a masked one
        return None, convolved, noise_scale
    threshold = np.where(usable, snr_threshold * noise_scale * noise, np.inf)
    segm = detect_sources(convolved, threshold, n_pixels=n_pixels, mask=~usable)
    if segm is None:
        return None, convolved, noise_scale
    if deblend and segm.n_labels > 0:
        segm = deblend_sources(convolved, segm, n_pixels=n_pixels, progress_bar=False)
    return segm, convolved, noise_scale


def source_mask(segm, dilate: int = 5, shape=None):
    """Boolean mask of segments grown by ``dilate`` pixels (for a second background pass)."""
    from scipy import ndimage

    if segm is None:
        return np.zeros(shape, bool)
    footprint = np.ones((2 * dilate + 1, 2 * dilate + 1), bool)
    return ndimage.binary_dilation(segm.data > 0, structure=footprint)
