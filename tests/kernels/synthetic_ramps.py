"""Synthetic ramps built read by read, for checking and timing ramp kernels.

Independent of the full simulator: each pixel accumulates Poisson electrons
frame by frame, every read adds white read noise, and the reads of each
resultant are averaged as the read pattern says. Optional jumps (charge added
from one read on) and a saturation plateau.
"""

from __future__ import annotations

import numpy as np

from romanflow.detector import ReadPattern


def synthetic_resultants(rate, read_pattern: ReadPattern, *, read_noise=5.0, gain=2.0, rng=None,
                         jump_read=None, jump_amplitude=None, full_well=None, poisson=True):
    """Resultants (n_resultants, n_pixels) float32 DN for known rates.

    Parameters
    ----------
    rate : array (n_pixels,)
        True count rate (DN/s).
    read_pattern : ReadPattern
        Read numbers (1-based) and frame time (s).
    read_noise : float or array (n_pixels,)
        White noise per read (DN); 0 for noiseless ramps.
    gain : float or array (n_pixels,)
        e⁻/DN; Poisson noise is drawn in electrons.
    rng : numpy.random.Generator
        Random generator (fixed seeds in tests).
    jump_read : int array (n_pixels,), optional
        1-based read from which a jump is added (0 or less: no jump).
    jump_amplitude : array (n_pixels,), optional
        Size of each jump (DN).
    full_well : float or array, optional
        Values are clipped at this level (DN), mimicking saturation.
    poisson : bool
        Draw Poisson noise (False gives the exact expected accumulation).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    rate = np.asarray(rate, dtype=np.float64)
    npix = rate.size
    gain = np.broadcast_to(np.asarray(gain, dtype=np.float64), (npix,))
    read_noise = np.broadcast_to(np.asarray(read_noise, dtype=np.float64), (npix,))
    frame_time = read_pattern.frame_time
    last = read_pattern.last_read
    wanted = {r for reads in read_pattern.read_pattern for r in reads}
    electrons = np.zeros(npix)
    per_frame = rate * gain * frame_time
    values = {}
    for read in range(1, last + 1):
        electrons += rng.poisson(per_frame) if poisson else per_frame
        if read in wanted:
            dn = electrons / gain
            if jump_read is not None:
                dn = dn + np.where((np.asarray(jump_read) > 0) & (read >= np.asarray(jump_read)),
                                   jump_amplitude, 0.0)
            if full_well is not None:
                dn = np.minimum(dn, full_well)
            if np.any(read_noise > 0):
                dn = dn + rng.normal(0.0, 1.0, npix) * read_noise
            values[read] = dn
    out = np.empty((read_pattern.n_resultants, npix), np.float32)
    for i, reads in enumerate(read_pattern.read_pattern):
        out[i] = np.mean([values[r] for r in reads], axis=0)
    return out
