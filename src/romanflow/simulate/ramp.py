"""Up-the-ramp sampling: charge accumulated read by read, averaged into resultants.

The kernel follows each pixel through the reads of an exposure:

1. photons and dark current arrive as Poisson increments (e-) between reads,
   read k being at time k · frame_time after reset;
2. cosmic-ray hits add their charge (e-) at the read they precede;
3. the accumulated charge is capped at the full well;
4. the linear level L = bias + charge/gain (DN) is turned into the measured
   level m by the classic non-linearity, the exact inverse of the LINEARITY
   correction polynomial Σ c_k m^k = L (Newton iterations, warm-started from the
   previous read);
5. measured reads are averaged into resultants by the read pattern, and white
   read noise of σ/√N (DN) is added to a resultant of N reads (the mean of N
   independent per-read noises has exactly this distribution).

Random numbers come from numba's per-thread generator re-seeded at the start
of every row, so the output depends only on the row seeds, not on how rows are
spread over threads.
"""

from __future__ import annotations

import numba
import numpy as np

#: Cosmic-ray hit rate in space (hits / cm² / s).
COSMIC_RAY_RATE = 5.0
#: Pixel area (cm²) of a 10 µm pixel.
PIXEL_AREA_CM2 = (10e-4) ** 2


def read_to_resultant(read_pattern) -> tuple[np.ndarray, np.ndarray]:
    """Map each read to the resultant it is averaged into.

    Parameters
    ----------
    read_pattern : sequence of sequence of int
        1-based read numbers per resultant.

    Returns
    -------
    resultant_of_read : int64 array (last_read,)
        0-based resultant index of read k+1, or -1 for a skipped read.
    n_reads : int64 array (n_resultants,)
        Reads averaged in each resultant.
    """
    last = max(max(r) for r in read_pattern)
    resultant_of_read = np.full(last, -1, dtype=np.int64)
    for i, reads in enumerate(read_pattern):
        for r in reads:
            resultant_of_read[int(r) - 1] = i
    n_reads = np.array([len(r) for r in read_pattern], dtype=np.int64)
    return resultant_of_read, n_reads


@numba.njit(cache=True, inline="always")
def _measured_level(linear, start, coeffs, max_iter):
    """Newton solve of Σ_k coeffs[k]·m^k = linear from ``start``; returns (m, dlinear/dm at m)."""
    m = start
    slope = 1.0
    for _ in range(max_iter):
        value = 0.0
        slope = 0.0
        for c in range(coeffs.shape[0] - 1, -1, -1):
            slope = slope * m + value
            value = value * m + coeffs[c]
        step = (value - linear) / slope
        m -= step
        if abs(step) < 1e-6:
            break
    return m, slope


@numba.njit(parallel=True, cache=True)
def _accumulate_resultants(rate_e, gain, bias, full_well, coeffs, read_noise,
                           resultant_of_read, n_reads, frame_time,
                           cr_start, cr_read, cr_amp, row_seeds, out):
    n_res = n_reads.shape[0]
    n_read = resultant_of_read.shape[0]
    ny, nx = rate_e.shape
    for y in numba.prange(ny):
        np.random.seed(row_seeds[y])
        acc = np.zeros(n_res)
        pixel_coeffs = np.empty(coeffs.shape[0])
        for x in range(nx):
            for c in range(coeffs.shape[0]):
                pixel_coeffs[c] = coeffs[c, y, x]
            lam = rate_e[y, x] * frame_time
            # Small means: inversion from a per-pixel exp(-lam); large: numba's PTRS sampler.
            small = lam < 30.0
            p0 = np.exp(-lam)
            g = gain[y, x]
            b = bias[y, x]
            q_max = max((full_well[y, x] - b) * g, 0.0)
            for k in range(n_res):
                acc[k] = 0.0
            q = 0.0
            # Measured level of the bias alone (start of the ramp).
            linear_prev = b
            m, slope = _measured_level(b, b, pixel_coeffs, 50)
            p = y * nx + x
            hit = cr_start[p]
            hit_end = cr_start[p + 1]
            for r in range(n_read):
                if small:
                    if lam > 0.0:
                        u = np.random.random()
                        n = 0
                        term = p0
                        cdf = p0
                        while u > cdf and n < 200:
                            n += 1
                            term *= lam / n
                            cdf += term
                        q += n
                else:
                    q += np.random.poisson(lam)
                while hit < hit_end and cr_read[hit] == r:
                    q += cr_amp[hit]
                    hit += 1
                if q > q_max:
                    q = q_max
                linear = b + q / g
                if linear != linear_prev:
                    # Warm start along the previous slope, then Newton steps on
                    # Σ c_k m^k = linear (one step usually reaches float precision).
                    m, slope = _measured_level(linear, m + (linear - linear_prev) / slope, pixel_coeffs, 8)
                    linear_prev = linear
                k = resultant_of_read[r]
                if k >= 0:
                    acc[k] += m
            sigma = read_noise[y, x]
            for k in range(n_res):
                out[k, y, x] = acc[k] / n_reads[k] + sigma / np.sqrt(n_reads[k]) * np.random.standard_normal()


def sample_resultants(rate_e, gain, bias, full_well, linearity_coeffs, read_noise, read_pattern,
                      frame_time, row_seeds, cosmic_rays=None) -> np.ndarray:
    """Resultants (DN, float32) of one exposure from per-pixel rates and detector properties.

    Parameters
    ----------
    rate_e : ndarray (ny, nx)
        Mean charge rate of each pixel, photons and dark current together (e-/s).
    gain : ndarray (ny, nx)
        Gain (e-/DN).
    bias : ndarray (ny, nx)
        Bias level (DN).
    full_well : ndarray (ny, nx)
        Largest linear level, bias included (DN).
    linearity_coeffs : ndarray (n_coeff, ny, nx)
        Correction polynomial: linear = Σ c_k m^k (DN).
    read_noise : ndarray (ny, nx)
        White read noise per read (DN).
    read_pattern : sequence of sequence of int
        1-based reads per resultant.
    frame_time : float
        Time between reads (s).
    row_seeds : uint32 array (ny,)
        Seed of each row's random stream.
    cosmic_rays : dict of arrays, optional
        ``y``, ``x``, ``read`` (1-based read the charge first appears in) and
        ``amplitude_e`` (e-) of each hit.

    Returns
    -------
    ndarray (n_resultants, ny, nx) float32
        Resultants in DN, before correlated noise and quantisation.
    """
    rate_e = np.ascontiguousarray(rate_e, dtype=np.float64)
    ny, nx = rate_e.shape
    resultant_of_read, n_reads = read_to_resultant(read_pattern)
    if cosmic_rays is not None and len(cosmic_rays["y"]):
        pixel = np.asarray(cosmic_rays["y"], np.int64) * nx + np.asarray(cosmic_rays["x"], np.int64)
        if pixel.min() < 0 or pixel.max() >= ny * nx:
            raise ValueError(f"cosmic-ray hits outside the {ny}x{nx} frame")
        read0 = np.asarray(cosmic_rays["read"], np.int64) - 1
        order = np.lexsort((read0, pixel))
        pixel, read0 = pixel[order], read0[order]
        amp = np.asarray(cosmic_rays["amplitude_e"], np.float64)[order]
        cr_start = np.zeros(ny * nx + 1, np.int64)
        np.cumsum(np.bincount(pixel, minlength=ny * nx), out=cr_start[1:])
    else:
        read0 = np.zeros(0, np.int64)
        amp = np.zeros(0, np.float64)
        cr_start = np.zeros(ny * nx + 1, np.int64)
    out = np.empty((len(n_reads), ny, nx), dtype=np.float32)
    _accumulate_resultants(
        rate_e,
        np.ascontiguousarray(gain, np.float32),
        np.ascontiguousarray(bias, np.float32),
        np.ascontiguousarray(full_well, np.float32),
        np.ascontiguousarray(linearity_coeffs, np.float32),
        np.ascontiguousarray(read_noise, np.float32),
        resultant_of_read, n_reads, float(frame_time),
        cr_start, read0, amp, np.ascontiguousarray(row_seeds, np.uint32), out,
    )
    return out


def draw_cosmic_rays(eligible, n_reads_total, frame_time, rng, rate=COSMIC_RAY_RATE,
                     pixel_area_cm2=PIXEL_AREA_CM2) -> dict:
    """Draw cosmic-ray hits over an exposure.

    Hits arrive uniformly in time over the ``n_reads_total · frame_time``
    seconds of the exposure and uniformly over the eligible pixels, at
    ``rate · pixel_area_cm2`` hits per pixel per second. Deposited charges
    follow a Landau-like (Moyal) distribution: most hits leave several hundred
    to about two thousand e-, with a long tail to tens of thousands.

    Parameters
    ----------
    eligible : bool ndarray (ny, nx)
        Pixels that can be hit (photosensitive pixels).
    n_reads_total : int
        Last read of the exposure.
    frame_time : float
        Time between reads (s).
    rng : numpy.random.Generator
    rate : float
        Hits per cm² per second.
    pixel_area_cm2 : float
        Area of one pixel (cm²).

    Returns
    -------
    dict with int arrays ``y``, ``x``, ``read`` (1-based: the first read that
    contains the charge) and float array ``amplitude_e`` (e-).
    """
    ys, xs = np.nonzero(eligible)
    exposure = n_reads_total * frame_time
    n_hits = rng.poisson(rate * pixel_area_cm2 * exposure * len(ys))
    pick = rng.integers(0, len(ys), n_hits) if len(ys) else np.zeros(0, np.int64)
    arrival = rng.uniform(0.0, exposure, n_hits)
    read = np.minimum(np.floor(arrival / frame_time).astype(np.int64) + 1, n_reads_total)
    # Moyal variate: X = -ln(Z²), Z ~ N(0, 1); location 800 e-, width 250 e-.
    z = rng.standard_normal(n_hits)
    moyal = -np.log(np.maximum(z * z, 1e-300))
    amplitude = np.clip(800.0 + 250.0 * moyal, 100.0, 1.0e5)
    order = np.lexsort((read, xs[pick], ys[pick])) if n_hits else np.zeros(0, np.int64)
    return {
        "y": ys[pick][order].astype(np.int64),
        "x": xs[pick][order].astype(np.int64),
        "read": read[order],
        "amplitude_e": amplitude[order],
    }


def row_seeds(seed_sequence: np.random.SeedSequence, n_rows: int) -> np.ndarray:
    """One uint32 seed per row from a seed sequence."""
    return seed_sequence.generate_state(n_rows, dtype=np.uint32)
