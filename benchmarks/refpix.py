"""Full-size timing of correlated-noise injection and the reference-pixel correction.

Run: ``.venv/bin/python -m benchmarks.refpix`` (one 4096 x 4096 detector, MA table 4: 9 resultants).
Also reports how much correlated noise the correction removes from the rate image.
"""

from __future__ import annotations

import os
import time

import numpy as np

from romanflow.detector import FRAME_TIME, N_BORDER, N_PIX_SCIENCE, ReadPattern, ma_table
from romanflow.detector_model import DetectorModel
from romanflow.simulate.correlated_noise import correlated_noise_resultants
from romanflow.kernels.refpix import correct_reference_pixels


def _slope(cube, read_pattern):
    t = read_pattern.mean_times - read_pattern.mean_times.mean()
    weights = (t / np.sum(t**2)).astype(np.float32)
    out = np.zeros(cube.shape[1:], dtype=np.float32)
    for w, frame in zip(weights, cube):
        out += w * frame
    return out


def main() -> None:
    read_pattern = ReadPattern(ma_table(4).as_list(), FRAME_TIME)
    model = DetectorModel("WFI01", N_PIX_SCIENCE)
    params = model.correlated_noise
    shape = model.shape
    rng = np.random.default_rng(2027)

    # warm-up (numba compilation / cache load) on a small frame
    small_noise, small_amp = correlated_noise_resultants((256, 256), [1, 1], params, rng)
    correct_reference_pixels(small_noise, small_amp)

    rows = []
    start = time.perf_counter()
    noise, amp33_noise = correlated_noise_resultants(shape, read_pattern.n_reads, params, rng)
    rows.append(("inject correlated noise", time.perf_counter() - start))

    resultants = noise + model.bias[None]
    amp33 = amp33_noise + np.float32(1000.0)
    start = time.perf_counter()
    corrected = correct_reference_pixels(resultants, amp33)
    rows.append(("correct_reference_pixels", time.perf_counter() - start))
    start = time.perf_counter()
    correct_reference_pixels(resultants, amp33, overwrite=True)
    rows.append(("correct_reference_pixels (in place)", time.perf_counter() - start))

    science = (slice(N_BORDER, -N_BORDER),) * 2
    raw_rate = _slope(noise, read_pattern)[science]
    cor_rate = _slope(corrected - model.bias[None], read_pattern)[science]

    print(f"{shape[0]}x{shape[1]}, {read_pattern.n_resultants} resultants, {os.cpu_count()} cores; "
          f"common_1f={params.common_1f:.2f} channel_1f={params.channel_1f:.2f} acn={params.acn:.2f} DN")
    print(f"{'stage':<40}{'seconds':>10}")
    for name, seconds in rows:
        print(f"{name:<40}{seconds:>10.2f}")
    print(f"{'rate-image power (DN/s)^2':<40}{'before':>12}{'after':>12}{'ratio':>8}")
    for name, before, after in (
        ("total correlated", raw_rate.var(), cor_rate.var()),
        ("row banding (row means)", raw_rate.mean(axis=1).var(), cor_rate.mean(axis=1).var()),
    ):
        print(f"{name:<40}{before:>12.3e}{after:>12.3e}{before / after:>8.2f}")


if __name__ == "__main__":
    main()
