"""Background estimation, detection images and source segmentation (pure array kernels)."""

from __future__ import annotations

import numpy as np


def _photutils():
    import photutils

    photutils.future_column_names = True
    return photutils


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

    box = (min(box_size, data.shape[0]), min(box_size, data.shape[1]))
    bkg = Background2D(
        data, box, filter_size=(filter_size, filter_size), bkg_estimator=MedianBackground(), mask=mask
    )
    return np.asarray(bkg.background, dtype=np.float32), np.asarray(bkg.background_rms, dtype=np.float32)


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


def segment_sources(
    data,
    err,
    *,
    kernel_fwhm_pix: float,
    snr_threshold: float = 5.0,
    n_pixels: int = 5,
    deblend: bool = True,
    mask=None,
):
    """Detect sources as connected pixels above a significance threshold in the smoothed image.

    The background-subtracted image is convolved with a Gaussian matched to
    the PSF; the threshold is ``snr_threshold`` times the propagated noise of
    the smoothed image, ``sqrt(err² ⊛ kernel²)``, so it is a true significance
    of the smoothed (matched-filter) image.

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

    Returns
    -------
    segm : photutils.segmentation.SegmentationImage or None
        None when nothing is detected.
    convolved : ndarray (ny, nx)
        The smoothed image.
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
    # Pixels whose smoothing window is only partly covered get an infinite threshold.
    coverage = ndimage.convolve((~bad).astype(np.float32), np.ones_like(kernel, np.float32), mode="constant")
    threshold = np.where(coverage >= kernel.size - 0.5, snr_threshold * noise, np.inf)
    segm = detect_sources(convolved, threshold, n_pixels=n_pixels, mask=bad)
    if segm is None:
        return None, convolved
    if deblend and segm.n_labels > 0:
        segm = deblend_sources(convolved, segm, n_pixels=n_pixels, progress_bar=False)
    return segm, convolved


def source_mask(segm, dilate: int = 5, shape=None):
    """Boolean mask of segments grown by ``dilate`` pixels (for a second background pass)."""
    from scipy import ndimage

    if segm is None:
        return np.zeros(shape, bool)
    footprint = np.ones((2 * dilate + 1, 2 * dilate + 1), bool)
    return ndimage.binary_dilation(segm.data > 0, structure=footprint)
