"""Correlated read noise of a WFI detector, as the readout clocks it.

A detector is read by ``nx / 128`` channels of 128 columns in parallel, plus
the reference output amp33 (``ny x 128``). Even channels (0, 2, …) and amp33
read their columns left to right, odd channels right to left, so all outputs
sample the same instant at the same position in their row. Each row takes
``128 + 14`` pixel times (:data:`~romanflow.detector.PIXEL_TIME` each), the
last 14 being pad cycles that produce no pixel. One read of a channel is thus
a time series of ``ny * 142`` samples, of which pixels are the first 128 of
every 142.

Noise model (all amplitudes are rms per read, DN):

* ``common_1f``: 1/f noise shared by every channel and amp33;
* ``acn``: alternating-column noise, ``a(t)·(-1)^t`` with a 1/f process
  ``a(t)``, also shared: an even/odd column offset that drifts in time. Its
  spectrum is the 1/f spectrum mirrored about the Nyquist frequency;
* ``channel_1f``: 1/f noise independent in each channel and in amp33;
* ``white_ref``: white noise of amp33. The white read noise of the pixels of
  the main array (reference pixels included) is per-pixel and belongs to the
  detector's ``read_noise``; it is not part of this kernel.

The spectra are those of :func:`romanflow.detector_model.correlated_noise_power`
(also the source of the REFPIX reference's coefficients).
The 1/f spectra are ``S(k) ∝ 1/k`` over the discrete Fourier bins of one read,
with the mean (k = 0) given the power of the lowest frequency so that reads
differ in level as well as in shape.

Resultants: every read has an independent realisation (the gap between reads
is much longer than the 1/f correlation the model carries within a read). The
mean of N independent realisations of a stationary Gaussian process is a
Gaussian process with the same spectrum and 1/N of its power, so a resultant of
N reads is drawn as **one** realisation scaled by ``1/sqrt(N)``: only
``n_resultants`` realisations are generated, however many reads there are.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft

from romanflow.detector import AMP33_WIDTH, CHANNEL_WIDTH, ROW_PERIOD
from romanflow.detector_model import correlated_noise_power


def _bin_amplitudes(spectrum: np.ndarray) -> np.ndarray:
    """Per-bin amplitude for complex unit normals (E|z|² = 2) giving E|X_k|² = S_k.

    The mean and Nyquist bins are real: only the real part (variance 1) is used.
    """
    amp = np.sqrt(spectrum / 2.0)
    amp[0] = np.sqrt(spectrum[0])
    amp[-1] = np.sqrt(spectrum[-1])
    return amp.astype(np.float32)


def correlated_noise_resultants(shape, n_reads_per_resultant, params, rng: np.random.Generator,
                                *, workers: int | None = None):
    """Correlated read noise averaged over the reads of each resultant.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` of the full frame, reference border included; ``nx`` a
        multiple of 128 and ``ny`` ≥ 2.
    n_reads_per_resultant : sequence of int
        Reads averaged into each resultant (``len`` = number of resultants).
    params : CorrelatedNoiseParameters
        Amplitudes ``common_1f``, ``channel_1f``, ``acn``, ``white_ref`` (DN rms per read).
    rng : numpy.random.Generator
        Source of randomness.
    workers : int, optional
        Threads drawing resultants in parallel (default: all available cores).
        The result does not depend on it.

    Returns
    -------
    noise : ndarray of float32, (n_resultants, ny, nx)
        Noise to add to the resultants of the main array (DN).
    amp33_noise : ndarray of float32, (n_resultants, ny, 128)
        Noise to add to the amp33 resultants (DN), white_ref included.
    """
    ny, nx = (int(s) for s in shape)
    if nx <= 0 or nx % CHANNEL_WIDTH or ny < 2:
        raise ValueError(f"frame shape {shape} not supported: width must be a multiple of {CHANNEL_WIDTH}")
    n_reads = np.asarray(n_reads_per_resultant, dtype=np.float64).ravel()
    if n_reads.size == 0 or np.any(n_reads < 1):
        raise ValueError("every resultant needs at least one read")
    workers = workers or os.cpu_count() or 1
    n_channels = nx // CHANNEL_WIDTH
    n_series = n_channels + 1  # science channels then amp33
    n_samples = ny * ROW_PERIOD
    n_freq = n_samples // 2 + 1

    power = correlated_noise_power(params, n_samples)
    channel_amp = _bin_amplitudes(power["channel"])
    common_amp = _bin_amplitudes(power["common"])

    n_res = n_reads.size
    noise = np.empty((n_res, ny, nx), dtype=np.float32)
    amp33_noise = np.empty((n_res, ny, AMP33_WIDTH), dtype=np.float32)

    def draw(r: int, child: np.random.Generator) -> None:
        normals = child.standard_normal((n_series + 1, n_freq, 2), dtype=np.float32)
        coeffs = normals.view(np.complex64)[..., 0]  # (n_series + 1, n_freq)
        coeffs[:, 0] = coeffs[:, 0].real
        coeffs[:, -1] = coeffs[:, -1].real
        spectra = coeffs[:n_series]
        spectra *= channel_amp
        spectra += coeffs[n_series] * common_amp
        series = scipy.fft.irfft(spectra, n=n_samples, axis=-1, norm="forward", workers=1)
        scale = np.float32(1.0 / np.sqrt(n_reads[r]))
        series *= scale
        series = series.reshape(n_series, ny, ROW_PERIOD)[:, :, :CHANNEL_WIDTH]

        frame = noise[r].reshape(ny, n_channels, CHANNEL_WIDTH)
        frame[:, 0::2, :] = series[0:n_channels:2].transpose(1, 0, 2)
        frame[:, 1::2, :] = series[1:n_channels:2, :, ::-1].transpose(1, 0, 2)

        white = child.standard_normal((ny, AMP33_WIDTH), dtype=np.float32)
        white *= np.float32(params.white_ref) * scale
        np.add(series[n_channels], white, out=amp33_noise[r])

    # One child generator per resultant: the result does not depend on the thread count.
    children = rng.spawn(n_res)
    if workers == 1 or n_res == 1:
        for r in range(n_res):
            draw(r, children[r])
    else:
        with ThreadPoolExecutor(max_workers=min(workers, n_res)) as pool:
            list(pool.map(draw, range(n_res), children))
    return noise, amp33_noise
