"""Reference-pixel correction of correlated read noise: self-calibrating, or with fixed coefficients.

Two corrections share the read-time layout below. :func:`apply_irrc` applies the
frequency coefficients of a REFPIX reference (``gamma``, ``zeta``, ``alpha`` for
the left reference columns, the right ones and amp33; see
:func:`irrc_coefficients` for how they are made from noise spectra).
:func:`correct_reference_pixels`, described here, needs no reference: it is
calibrated on the exposure itself.

The readout adds to every channel a slow drift of its own and a noise common to
all channels and to the reference output amp33: 1/f noise and alternating
column noise (ACN), see :mod:`romanflow.simulate.correlated_noise`. All outputs
are clocked together, so in read-time order (odd channels reversed, 14 pad
cycles after every 128 pixels) the common noise is one time series per read
that amp33 samples at every pixel time.

Algorithm, per exposure:

1. **Offsets.** Subtract from every amp33 pixel and every reference column
   pixel used its mean over the resultants. A per-pixel constant changes no
   slope, and without it the fixed bias pattern would swamp the noise.
2. **Common noise.** Put amp33 in time order; where the left and right
   reference columns are read at the same instants (the first 4 samples of
   each row), average them in with inverse-variance weights measured on the
   exposure; fill the pad samples (first by
   linear interpolation across the pad, then with the estimate itself), and
   Wiener-filter it: ``Ĉ = irfft(H·rfft(amp33))`` with
   ``H(f) = max(P(f) − W, 0)/P(f)``, where ``P`` is the power spectrum of
   amp33 (each resultant normalised by its own white level, averaged over
   resultants, averaged in logarithmic frequency bands, mirrored about the
   Nyquist frequency where ACN lives) and ``W`` its white floor, measured as
   the median power of the middle half of the band. Everything is derived
   from the data: no coefficient file.
3. Subtract ``Ĉ(t)`` from every pixel of every channel at its read time
   ``t``, reference pixels included.

No drift line is fitted to the top and bottom reference rows. Per channel,
such a line carries the rows' white noise and the ends of the channel's own
1/f noise into all its pixels: on simulated data it raised the
channel-to-channel power of the rate image 3 to 150-fold, with or without
correlated noise. Common to all channels, it is redundant with amp33, whose
spectrum at the lowest frequencies is dominated by the common noise (H ≈ 1
there), and subtracting it next to a filtered amp33 left a common offset of
1-2e-3 DN/s in the rates (alternating-column and common 1/f noise); without
it that offset is below 1e-4 DN/s.

Residual (``return_residual_variance=True``). The correction leaves in every
pixel the estimate's error ``C − Ĉ``, common to all channels and correlated
in read time. Its variance per resultant (DN²) is measured on the left and
right reference columns, which see the same ``C`` with independent noise:
the mean of ``(L − Ĉ)(R − Ĉ)``, plus back the covariance of each column's
noise with ``Ĉ`` (the columns were merged into it), obtained by passing a
unit-variance probe through the same, now fixed, linear filter. Where the
columns cannot be used (a single channel), it falls back on the spectral
prediction ``Σ (1 − H)²·(P − W) + H²·W`` over frequencies, with ``W`` from a
white + 1/f + mirrored-1/f fit to the power; that fallback runs 30-50 % low on
simulated data. Neither covers each channel's own 1/f noise.

Science pixels are never used to estimate the correction, so the correction is
independent of the scene. What it cannot remove: each science channel's own
1/f noise, and common noise at frequencies where it is weaker than amp33's
white noise.
"""

from __future__ import annotations

import os

import numba
import numpy as np
import scipy.fft

from romanflow.detector import AMP33_WIDTH, CHANNEL_WIDTH, N_BORDER, ROW_PERIOD

#: Logarithmic frequency bands per half of the spectrum used to average the power.
N_BANDS_PER_HALF = 120


def correct_reference_pixels(resultants: np.ndarray, amp33: np.ndarray, *,
                             reference_mask: np.ndarray | None = None,
                             n_iterations: int = 2,
                             workers: int | None = None,
                             overwrite: bool = False,
                             return_residual_variance: bool = False):
    """Remove correlated read noise from resultants using reference pixels and amp33.

    Parameters
    ----------
    resultants : ndarray, (n_resultants, ny, nx)
        Resultants in DN, full frame with the 4-pixel reference border; ``nx`` a
        multiple of 128, at least 2 resultants.
    amp33 : ndarray, (n_resultants, ny, 128)
        amp33 resultants (DN), read simultaneously with the main array.
    reference_mask : ndarray of bool, (ny, nx), optional
        False for reference pixels not to be used (e.g. BAD_REF_PIXEL). Reference
        pixels that are not finite in some resultant are never used; non-finite
        amp33 values count as 0.
    n_iterations : int
        Passes of the pad filling and spectral estimate (≥ 1).
    workers : int, optional
        Threads for the FFTs (default: all available cores).
    overwrite : bool
        Correct ``resultants`` in place when it is already float32.
    return_residual_variance : bool
        Also return the estimated variance of the common noise the correction
        leaves in each resultant.

    Returns
    -------
    corrected : ndarray of float32, (n_resultants, ny, nx)
        Corrected resultants (DN).
    residual_variance : ndarray of float64, (n_resultants,)
        Only with ``return_residual_variance``: per-sample variance (DN²) of the
        common noise left in each resultant, measured on the reference columns
        (see the module notes). Multiply by the reads per resultant for a
        per-read figure.
    """
    data = np.asarray(resultants)
    if data.ndim != 3:
        raise ValueError(f"resultants must be a (n_resultants, ny, nx) cube, got shape {data.shape}")
    n_res, ny, nx = data.shape
    if nx % CHANNEL_WIDTH or ny < 2 * N_BORDER + 1:
        raise ValueError(f"frame shape {(ny, nx)} not supported: width must be a multiple of {CHANNEL_WIDTH}")
    if n_res < 2:
        raise ValueError("reference-pixel correction needs at least 2 resultants")
    if np.shape(amp33) != (n_res, ny, AMP33_WIDTH):
        raise ValueError(f"amp33 has shape {np.shape(amp33)}, expected {(n_res, ny, AMP33_WIDTH)}")
    if n_iterations < 1:
        raise ValueError("n_iterations must be at least 1")
    workers = workers or os.cpu_count() or 1

    if overwrite and data.dtype == np.float32 and data.flags.writeable:
        out = data
    else:
        out = data.astype(np.float32, copy=True)

    # 1. Offsets: every amp33 pixel's mean over the resultants.
    amp = np.nan_to_num(np.asarray(amp33, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    amp = amp - amp.mean(axis=0, dtype=np.float64).astype(np.float32)
    mask = None
    if reference_mask is not None:
        mask = np.asarray(reference_mask, dtype=bool)
        if mask.shape != (ny, nx):
            raise ValueError(f"reference mask has shape {mask.shape}, expected {(ny, nx)}")

    # 2. Common noise from amp33 (and the left and right reference columns), in read-time order.
    series = np.empty((n_res, ny, ROW_PERIOD), dtype=np.float32)
    series[:, :, :CHANNEL_WIDTH] = amp
    columns = _merge_reference_columns(series, out, weight_mask=mask)
    _fill_pads_linearly(series)
    common, residual_variance, gains = _wiener_common(series, n_iterations, workers)
    if return_residual_variance and columns is not None:
        residual_variance = _residual_from_columns(common, columns, gains, workers)

    # 3. Subtract the common noise from every pixel at its read time.
    _subtract_channel_series(out, common)
    if return_residual_variance:
        return out, residual_variance
    return out


def _merge_reference_columns(series, out, *, weight_mask):
    """Average the reference columns into amp33's time series, in place.

    Returns ``(left, right, both, merge_weight, w_ref)`` for the residual
    estimate (the left and right columns less their means, (n_res, ny, 4) DN; where
    both are usable; each column's weight in the merged samples; the columns'
    white variance per resultant, DN²), or None when they are not merged.

    The 4 left reference columns (first channel) and the 4 right ones (last
    channel) are read at the same instants as 4 amp33 columns (the first or
    last 4 of each row in read order). After removing each pixel's mean over
    the resultants, each such sample estimates
    the same common noise as amp33 with its own white noise; the samples are
    combined with inverse-variance weights measured on the exposure:
    ``var(L − R) = 2·w_ref`` and ``var((L + R)/2 − A) = w_ref/2 + w_amp``.
    """
    n_res, ny, nx = out.shape
    n_channels = nx // CHANNEL_WIDTH
    last = n_channels - 1
    k_left = np.arange(N_BORDER)                                  # channel 0 reads left to right
    cols_left = k_left
    if last % 2:                                                  # odd channel: read right to left
        k_right = np.arange(N_BORDER)
        cols_right = nx - 1 - k_right
    else:
        k_right = np.arange(CHANNEL_WIDTH - N_BORDER, CHANNEL_WIDTH)
        cols_right = last * CHANNEL_WIDTH + k_right
    if n_channels == 1 or not np.array_equal(k_left, k_right):
        return None                                               # not read at the same instants
    sides = []
    for cols in (cols_left, cols_right):
        values = out[:, :, cols].astype(np.float64)               # (n_res, ny, 4)
        usable = np.isfinite(values).all(axis=0)
        if weight_mask is not None:
            usable &= weight_mask[:, cols]
        values = np.where(usable, values, 0.0)
        values -= values.mean(axis=0)
        sides.append((values, usable))
    (left, use_l), (right, use_r) = sides
    both = use_l & use_r
    if both.sum() < 16:
        return None
    amp = series[:, :, :N_BORDER].astype(np.float64)
    w_ref = np.mean((left - right)[:, both] ** 2) / 2.0
    w_amp = np.mean((0.5 * (left + right) - amp)[:, both] ** 2) - w_ref / 2.0
    if not (w_ref > 0 and w_amp > 0):
        return None
    inv_amp, inv_ref = 1.0 / w_amp, 1.0 / w_ref
    total = inv_amp + inv_ref * (use_l.astype(np.float64) + use_r)
    merged = (amp * inv_amp + inv_ref * (left * use_l + right * use_r)) / total
    series[:, :, :N_BORDER] = merged.astype(np.float32)
    w_ref_each = np.mean((left - right)[:, both] ** 2, axis=1) / 2.0            # DN², per resultant
    merge_weight = (inv_ref * use_l / total, inv_ref * use_r / total)
    return left, right, both, merge_weight, w_ref_each


def _residual_from_columns(common, columns, gains, workers):
    """Residual common variance per resultant (DN²), measured on the left and right reference columns.

    Both columns see the same common noise ``C`` with independent noise of
    their own (``n_L``, ``n_R``), so the mean of ``(L − Ĉ)(R − Ĉ)`` is
    ``var(C − Ĉ) − cov(n_L, Ĉ) − cov(n_R, Ĉ)``: the columns were merged into
    the series ``Ĉ`` is made from. The correction is linear once its gains are
    fixed, so those covariances are measured by passing a unit-variance probe
    through the same merge weights, pad filling and filters, and added back.
    The result is the residual at the first samples of each row, where the
    merged columns make it a few per cent lower than elsewhere.
    """
    left, right, both, merge_weight, w_ref = columns
    n_res, ny, _ = left.shape
    estimate = common[:, :, :N_BORDER].astype(np.float64)
    product = ((left - estimate) * (right - estimate))[:, both].mean(axis=1)
    rng = np.random.default_rng(0)
    z_left, z_right = rng.standard_normal((2, n_res, ny, N_BORDER))
    probe = np.zeros(common.shape, dtype=np.float32)
    probe[:, :, :N_BORDER] = (merge_weight[0] * z_left + merge_weight[1] * z_right).astype(np.float32)
    _fill_pads_linearly(probe)
    response = _wiener_common(probe, len(gains), workers, gains=gains)[0][:, :, :N_BORDER]
    own_covariance = ((z_left + z_right) * response)[:, both].mean()        # per unit column variance
    return np.maximum(product + own_covariance * w_ref, 0.0)


def _fill_pads_linearly(series: np.ndarray) -> None:
    """Fill the pad samples of (n_res, ny, ROW_PERIOD) in place.

    Each pad is a straight line from the row's last pixel to the next row's first.
    """
    n_pad = ROW_PERIOD - CHANNEL_WIDTH
    last = series[:, :, CHANNEL_WIDTH - 1]
    nxt = np.empty_like(last)
    nxt[:, :-1] = series[:, 1:, 0]
    nxt[:, -1] = last[:, -1]
    frac = (np.arange(1, n_pad + 1, dtype=np.float32) / (n_pad + 1))[None, None, :]
    series[:, :, CHANNEL_WIDTH:] = last[..., None] + (nxt - last)[..., None] * frac


def _band_starts(n_freq: int) -> np.ndarray:
    """Start bins of logarithmic bands, symmetric about the middle of the spectrum."""
    half = n_freq // 2
    edges = np.unique(np.round(np.geomspace(1, half, N_BANDS_PER_HALF)).astype(np.int64))
    lower = np.concatenate([[0], edges[edges < half]])      # bands [lower_i, lower_i+1), last ends at half
    ends = np.concatenate([lower[1:], [half]])
    upper = n_freq - ends                                    # bin i <-> n_freq - 1 - i
    return np.unique(np.concatenate([lower, [half], upper]))


def _wiener_common(series: np.ndarray, n_iterations: int, workers: int, *, gains=None):
    """Wiener estimate of the correlated part of amp33 and the variance it leaves.

    Returns the estimate, float32 of the shape of ``series`` (n_res, ny,
    ROW_PERIOD), and the residual variance per resultant (DN², (n_res,)): the
    sum over frequencies of ``(1 − H)²·(P/W − 1) + H²`` times the white level,
    normalised to a per-sample variance, and the gains of each iteration.
    With ``gains`` given, those are applied instead (a linear filter).
    """
    n_res, ny, period = series.shape
    n_samples = ny * period
    flat = series.reshape(n_res, n_samples)
    n_freq = n_samples // 2 + 1
    starts = _band_starts(n_freq)
    widths = np.diff(np.r_[starts, n_freq])
    mid = slice(n_freq // 4, 3 * n_freq // 4)
    estimate = None
    used = []
    for iteration in range(n_iterations):
        spectrum = scipy.fft.rfft(flat, axis=-1, workers=workers)
        if gains is not None:
            spectrum *= gains[iteration].astype(np.float32)
            estimate = scipy.fft.irfft(spectrum, n=n_samples, axis=-1, workers=workers).astype(np.float32)
            if iteration + 1 < n_iterations:
                series[:, :, CHANNEL_WIDTH:] = estimate.reshape(n_res, ny, period)[:, :, CHANNEL_WIDTH:]
            continue
        power = spectrum.real**2 + spectrum.imag**2
        white = np.median(power[:, mid], axis=1) / np.log(2.0)   # exponential power: median = ln2 · mean
        white = np.where(white > 0, white, 1.0)
        mean_ratio = (power / white[:, None]).mean(axis=0, dtype=np.float64)
        ratio = np.repeat(np.add.reduceat(mean_ratio, starts) / widths, widths)
        gain = np.clip(1.0 - 1.0 / np.maximum(ratio, 1e-12), 0.0, 1.0)
        spectrum *= gain.astype(np.float32)
        used.append(gain)
        estimate = scipy.fft.irfft(spectrum, n=n_samples, axis=-1, workers=workers).astype(np.float32)
        if iteration + 1 < n_iterations:
            pads = estimate.reshape(n_res, ny, period)[:, :, CHANNEL_WIDTH:]
            series[:, :, CHANNEL_WIDTH:] = pads
    if gains is not None:
        return estimate.reshape(n_res, ny, period), None, gains
    # rfft bins stand for two full-spectrum bins except DC (and Nyquist for even n).
    multiplicity = np.full(n_freq, 2.0)
    multiplicity[0] = 1.0
    if n_samples % 2 == 0:
        multiplicity[-1] = 1.0
    floor = _white_floor(mean_ratio)
    left_per_white = np.sum(multiplicity * ((1.0 - gain) ** 2 * (ratio - floor) + gain**2 * floor))
    residual_variance = np.maximum(white.astype(np.float64) * left_per_white / float(n_samples) ** 2, 0.0)
    return estimate.reshape(n_res, ny, period), residual_variance, used


def _white_floor(mean_ratio: np.ndarray) -> float:
    """amp33's white level in units of the median-based one used by the filter.

    The median of the middle half of the band also holds the common noise's
    power there, which is not negligible against the white level: taking it as
    white would hide that part from the residual. The power is fitted instead
    with ``a + b/k + c/(n − k)`` over rfft bins ``k ≥ 1`` (a white floor, a 1/f
    part and the 1/f part mirrored about the Nyquist frequency, i.e. the
    alternating-column noise) and the floor ``a`` returned; when the fit is
    not usable, 1.
    """
    n_freq = mean_ratio.size
    k = np.arange(1, n_freq, dtype=np.float64)
    design = np.stack([np.ones_like(k), 1.0 / k, 1.0 / (n_freq - k)], axis=1)
    coeffs, *_ = np.linalg.lstsq(design, mean_ratio[1:], rcond=None)
    floor = float(coeffs[0])
    return floor if np.isfinite(floor) and 0.5 < floor <= 1.5 else 1.0


@numba.njit(cache=True, parallel=True)
def _subtract_channel_series(out, common):
    """out[r, y, col(c, k)] -= common[r, y, k] for every channel c.

    col(c, k) = 128c + k for even channels and 128c + 127 − k for odd ones.
    """
    n_res, ny, nx = out.shape
    n_channels = nx // 128
    for index in numba.prange(n_res * ny):
        r = index // ny
        y = index - r * ny
        for c in range(n_channels):
            base = c * 128
            if c % 2 == 0:
                for k in range(128):
                    out[r, y, base + k] -= common[r, y, k]
            else:
                for k in range(128):
                    out[r, y, base + 127 - k] -= common[r, y, k]


# --- Correction with fixed frequency coefficients (the REFPIX reference) ---------------------------------

#: Reference columns at each side of the frame.
N_REFERENCE_COLUMNS = N_BORDER


def irrc_coefficients(common_power: np.ndarray, amp33_noise_power: np.ndarray, column_noise_power: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequency coefficients ``(gamma, zeta, alpha)`` of the reference-pixel correction, complex128 (n_freq,).

    Inputs are power spectra per rfft bin of one read's time series (any common
    unit, DN² per bin): ``common_power`` of the noise shared by every output
    (what the correction removes), ``amp33_noise_power`` of what amp33 sees on
    top of it, and ``column_noise_power`` of what the left (and the right)
    reference columns see on top of it once placed at their read times in an
    otherwise zero series and scaled by ``ROW_PERIOD / 4``. Each input is an
    unbiased estimate of the common noise at every frequency; they are combined
    with inverse-noise weights and the combination shrunk by its Wiener gain
    ``S/(S + N)``, ``N`` the combination's noise. The same coefficients apply to
    every channel when the common noise is the same in all (one row).
    """
    common = np.asarray(common_power, dtype=np.float64)
    inv_amp = 1.0 / np.maximum(np.asarray(amp33_noise_power, dtype=np.float64), 1e-300)
    inv_col = 1.0 / np.maximum(np.asarray(column_noise_power, dtype=np.float64), 1e-300)
    total = inv_amp + 2.0 * inv_col
    gain = common / (common + 1.0 / total)
    alpha = gain * inv_amp / total
    gamma = gain * inv_col / total
    return gamma.astype(np.complex128), gamma.astype(np.complex128), alpha.astype(np.complex128)


def _column_positions(nx: int):
    """(columns, read positions k) of the left reference columns (channel 0) and of the right ones (last)."""
    last = nx // CHANNEL_WIDTH - 1
    left_cols = np.arange(N_REFERENCE_COLUMNS)
    right_cols = np.arange(nx - N_REFERENCE_COLUMNS, nx)
    right_k = right_cols - last * CHANNEL_WIDTH
    if last % 2:
        right_k = CHANNEL_WIDTH - 1 - right_k
    return (left_cols, left_cols.copy()), (right_cols, right_k)


def apply_irrc(resultants: np.ndarray, amp33: np.ndarray, gamma: np.ndarray, zeta: np.ndarray,
               alpha: np.ndarray, *, reference_mask: np.ndarray | None = None,
               column_signal: np.ndarray | None = None, workers: int | None = None,
               overwrite: bool = False, return_residual_variance: bool = False):
    """Remove correlated read noise with fixed frequency coefficients (a REFPIX reference).

    For every resultant: remove each amp33 and reference-column pixel's mean over
    the resultants (and from the reference columns any known signal of their own,
    ``column_signal``); lay amp33 out in read-time order (``ROW_PERIOD`` samples per
    row, pads filled by linear interpolation), and the 4 left reference columns
    (channel 0) and 4 right ones (last channel) each at their read times in a
    zero series scaled by ``ROW_PERIOD / 4``; then for every channel ``c``
    subtract ``irfft(gamma_c·F(left) + zeta_c·F(right) + alpha_c·F(amp33))`` from
    its pixels (reference pixels included) at their read times.

    Parameters
    ----------
    resultants : ndarray, (n_resultants, ny, nx)
        Resultants (DN), full frame; ``nx`` a multiple of 128, ≥ 2 resultants.
    amp33 : ndarray, (n_resultants, ny, 128)
        amp33 resultants (DN).
    gamma, zeta, alpha : ndarray of complex, (n_channels or 1, ny·ROW_PERIOD // 2 + 1)
        Coefficients of the left columns, right columns and amp33; one row applies to every channel.
    reference_mask : ndarray of bool, (ny, nx), optional
        False for reference pixels not to be used (they count as 0).
    column_signal : ndarray, (n_resultants, ny, 8), optional
        Known signal of the 4 left then 4 right reference columns (DN), e.g. the
        decay after reset: amp33 does not see it, and left in the columns it would
        be taken for common noise at the lowest frequencies, where the columns
        weigh most, and subtracted from every pixel.
    workers : int, optional
        Threads for the FFTs.
    overwrite : bool
        Correct ``resultants`` in place when it is already float32.
    return_residual_variance : bool
        Also return the common noise left per resultant (DN² per sample),
        predicted from the coefficients and amp33's measured power (see
        :func:`_residual_from_coefficients`; exact when the reference describes
        the detector's noise). The reference columns cannot measure it: they
        are part of the estimate, and their own noise enters it at a level
        comparable to the residual.

    Returns
    -------
    corrected : ndarray of float32 (n_resultants, ny, nx), and the residual variance (n_resultants,) if asked.
    """
    data = np.asarray(resultants)
    if data.ndim != 3:
        raise ValueError(f"resultants must be a (n_resultants, ny, nx) cube, got shape {data.shape}")
    n_res, ny, nx = data.shape
    if nx % CHANNEL_WIDTH or ny < 2 * N_BORDER + 1:
        raise ValueError(f"frame shape {(ny, nx)} not supported: width must be a multiple of {CHANNEL_WIDTH}")
    if n_res < 2:
        raise ValueError("reference-pixel correction needs at least 2 resultants")
    if np.shape(amp33) != (n_res, ny, AMP33_WIDTH):
        raise ValueError(f"amp33 has shape {np.shape(amp33)}, expected {(n_res, ny, AMP33_WIDTH)}")
    n_channels = nx // CHANNEL_WIDTH
    n_samples = ny * ROW_PERIOD
    n_freq = n_samples // 2 + 1
    coeffs = [np.atleast_2d(np.asarray(c)) for c in (gamma, zeta, alpha)]
    for name, c in zip(("gamma", "zeta", "alpha"), coeffs):
        if c.shape[0] not in (1, n_channels) or c.shape[1] != n_freq:
            raise ValueError(f"{name} has shape {c.shape}, expected (1 or {n_channels}, {n_freq}) for a frame "
                             f"of {ny} x {nx} pixels")
    workers = workers or os.cpu_count() or 1
    out = data if (overwrite and data.dtype == np.float32 and data.flags.writeable) else \
        data.astype(np.float32, copy=True)
    mask = None if reference_mask is None else np.asarray(reference_mask, dtype=bool)
    if mask is not None and mask.shape != (ny, nx):
        raise ValueError(f"reference mask has shape {mask.shape}, expected {(ny, nx)}")

    amp = np.nan_to_num(np.asarray(amp33, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    amp = amp - amp.mean(axis=0, dtype=np.float64).astype(np.float32)
    series = np.zeros((3, n_res, ny, ROW_PERIOD), dtype=np.float32)      # left, right, amp33
    series[2, :, :, :CHANNEL_WIDTH] = amp
    _fill_pads_linearly(series[2])
    scale = np.float32(ROW_PERIOD / N_REFERENCE_COLUMNS)
    for side, (cols, k) in enumerate(_column_positions(nx)):
        values = out[:, :, cols].astype(np.float64)
        usable = np.isfinite(values).all(axis=0)
        if mask is not None:
            usable &= mask[:, cols]
        values = np.where(usable, values - np.where(usable, values, 0.0).mean(axis=0), 0.0)
        if column_signal is not None:
            values = values - np.asarray(column_signal, dtype=np.float64)[:, :, side * N_REFERENCE_COLUMNS:
                                                                           (side + 1) * N_REFERENCE_COLUMNS]
        series[side][:, :, k] = (values * scale).astype(np.float32)
    spectra = scipy.fft.rfft(series.reshape(3, n_res, n_samples), axis=-1, workers=workers)

    rows = {}
    for c in range(n_channels):
        key = tuple(min(c, len(coeff) - 1) for coeff in coeffs)
        rows.setdefault(key, []).append(c)
    for key, channels in rows.items():
        g, z, a = (coeff[i] for coeff, i in zip(coeffs, key))
        combined = g * spectra[0] + z * spectra[1] + a * spectra[2]
        correction = scipy.fft.irfft(combined, n=n_samples, axis=-1, workers=workers).astype(np.float32)
        correction = correction.reshape(n_res, ny, ROW_PERIOD)[:, :, :CHANNEL_WIDTH]
        for c in channels:
            base = c * CHANNEL_WIDTH
            out[:, :, base:base + CHANNEL_WIDTH] -= correction if c % 2 == 0 else correction[:, :, ::-1]
    if not return_residual_variance:
        return out
    return out, _residual_from_coefficients(spectra[2], *(coeff[0] for coeff in coeffs), n_samples)


def _residual_from_coefficients(amp33_spectra, gamma, zeta, alpha, n_samples) -> np.ndarray:
    """Common noise left per resultant (DN² per sample) predicted from the coefficients and amp33's power.

    Coefficients of the Wiener form of :func:`irrc_coefficients` give at each
    frequency the gain ``g = γ + ζ + α`` and ``α = g·N/N_A`` (``N`` the combined
    noise, ``N_A`` amp33's); with amp33's power ``P = S + N_A`` this leaves
    ``g·N = α(1 − g)·P/(1 − g + α)``, summed over frequencies.
    """
    g = np.clip((gamma + zeta + alpha).real, 0.0, 1.0)
    a = np.clip(alpha.real, 0.0, None)
    factor = np.where(a > 0, a * (1.0 - g) / np.maximum(1.0 - g + a, 1e-300), 0.0)
    multiplicity = np.full(factor.size, 2.0)
    multiplicity[0] = 1.0
    if n_samples % 2 == 0:
        multiplicity[-1] = 1.0
    power = amp33_spectra.real**2 + amp33_spectra.imag**2
    return (power * (multiplicity * factor)).sum(axis=-1) / float(n_samples) ** 2
