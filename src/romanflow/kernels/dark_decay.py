"""Dark decay: the signal a WFI pixel shows after reset, ``A·exp(−t/τ)``, averaged over each resultant.

Pure kernel: amplitude (DN), time constant (s), the read pattern and the frame
shape in, the signal of every resultant out. Time ``t`` is counted from the
start of the first read: read ``j`` (1-based) of a pixel happens at
``(j − 1)·frame_time + t_pixel``, where ``t_pixel`` is the pixel's read time
within a frame (row ``y``, position ``k`` in its channel's read order, odd
channels read right to left): ``(y·ROW_PERIOD + k)·PIXEL_TIME``. The signal is
separable: ``A · mean_j exp(−(j−1)·frame_time/τ) · exp(−t_pixel/τ)``.
"""

from __future__ import annotations

import numpy as np

from romanflow.detector import CHANNEL_WIDTH, PIXEL_TIME, ROW_PERIOD, ReadPattern


def pixel_read_times(shape) -> np.ndarray:
    """Read time of every pixel within one frame (s), float64 (ny, nx); nx a multiple of 128."""
    ny, nx = shape
    if nx % CHANNEL_WIDTH:
        raise ValueError(f"frame width {nx} is not a multiple of {CHANNEL_WIDTH}")
    k = np.arange(nx) % CHANNEL_WIDTH
    odd = (np.arange(nx) // CHANNEL_WIDTH) % 2 == 1
    k = np.where(odd, CHANNEL_WIDTH - 1 - k, k)
    return (np.arange(ny)[:, None] * ROW_PERIOD + k[None, :]) * PIXEL_TIME


def resultant_factors(time_constant: float, read_pattern: ReadPattern) -> np.ndarray:
    """mean over each resultant's reads of exp(−(j − 1)·frame_time/τ), float64 (n_resultants,)."""
    return np.array([np.mean(np.exp(-(np.asarray(reads, np.float64) - 1) * read_pattern.frame_time / time_constant))
                     for reads in read_pattern.read_pattern])


def dark_decay_signal(amplitude: float, time_constant: float, read_pattern: ReadPattern, shape,
                      resultant: int) -> np.ndarray:
    """Dark-decay signal (DN, float32 (ny, nx)) in one resultant (0-based) of a frame of ``shape``."""
    if not (time_constant > 0):
        raise ValueError(f"dark-decay time constant must be > 0 s, got {time_constant}")
    factor = amplitude * resultant_factors(time_constant, read_pattern)[resultant]
    return (factor * np.exp(-pixel_read_times(shape) / time_constant)).astype(np.float32)


def add_dark_decay(resultants: np.ndarray, amplitude: float, time_constant: float,
                   read_pattern: ReadPattern) -> None:
    """Add the dark-decay signal to float32 resultants (n_resultants, ny, nx) in place (DN).

    Resultant k gets exactly :func:`dark_decay_signal` of k; the per-pixel exponential is computed once.
    """
    if not (time_constant > 0):
        raise ValueError(f"dark-decay time constant must be > 0 s, got {time_constant}")
    pixel = np.exp(-pixel_read_times(resultants.shape[1:]) / time_constant)
    for k, factor in enumerate(amplitude * resultant_factors(time_constant, read_pattern)):
        resultants[k] += (factor * pixel).astype(np.float32)


def subtract_dark_decay(resultants: np.ndarray, amplitude: float, time_constant: float,
                        read_pattern: ReadPattern) -> None:
    """Subtract the dark-decay signal from float32 resultants (n_resultants, ny, nx) in place (DN)."""
    if not (time_constant > 0):
        raise ValueError(f"dark-decay time constant must be > 0 s, got {time_constant}")
    shape = resultants.shape[1:]
    pixel = np.exp(-pixel_read_times(shape) / time_constant).astype(np.float32)
    for i, factor in enumerate(resultant_factors(time_constant, read_pattern)):
        resultants[i] -= np.float32(amplitude * factor) * pixel


def dark_decay_columns(amplitude: float, time_constant: float, read_pattern: ReadPattern, shape,
                       columns) -> np.ndarray:
    """Dark-decay signal (DN, float64 (n_resultants, ny, len(columns))) of some columns of a frame of ``shape``."""
    if not (time_constant > 0):
        raise ValueError(f"dark-decay time constant must be > 0 s, got {time_constant}")
    pixel = np.exp(-pixel_read_times(shape)[:, np.asarray(columns)] / time_constant)
    factors = amplitude * resultant_factors(time_constant, read_pattern)
    return factors[:, None, None] * pixel[None]
