"""Compare the two ramp-fitting methods: accuracy, error honesty, jumps, speed, memory.

Run: ``.venv/bin/python -m benchmarks.ramp_methods [--size 4088] [--table 4]``

Accuracy figures come from synthetic ramps built read by read (Poisson
electrons, white read noise, averaged by the MA table) with known rates; the
timing uses a full detector (4088 x 4088 science pixels) made by tiling a
synthetic block, fitted with and without jump detection.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numba
import numpy as np

from romanflow import dq
from romanflow.detector import FRAME_TIME, N_PIX_SCIENCE, ReadPattern, ma_table
from romanflow.kernels.ramp import METHODS, fit_ramps
from tests.kernels.synthetic_ramps import synthetic_resultants

READ_NOISE, GAIN = 5.0, 2.0


def _flat_fit(method, res, pattern):
    fit = fit_ramps(res[:, None, :], None, READ_NOISE, GAIN, pattern, method=method)
    return fit.slope[0], fit.err[0], fit.groupdq[:, 0], fit.n_jumps[0], fit.pixeldq[0]


def accuracy(method, pattern, rng_seed=1):
    rng = np.random.default_rng(rng_seed)
    levels = [1.0, 10.0, 100.0, 1000.0, 5000.0]
    rate = np.concatenate([np.full(50000, r) for r in levels] + [rng.uniform(0.3, 1.0, 50000)])
    res = synthetic_resultants(rate, pattern, read_noise=READ_NOISE, gain=GAIN, rng=rng)
    slope, err, _, njump, _ = _flat_fit(method, res, pattern)
    out = {}
    out["bias"] = max(abs(np.median((slope[rate == r] - r) / r)) for r in levels)
    pulls = []
    for lo, hi in [(0.3, 1.0), (1.0, 10.0), (10.0, 100.0), (100.0, 1000.0), (1000.0, 1e4)]:
        sel = (rate >= lo) & (rate < hi)
        pulls.append(np.std((slope[sel] - rate[sel]) / err[sel]))
    out["pull_std"] = pulls
    out["false_jumps"] = np.mean(njump > 0)
    # precision at 10 DN/s (relative error of one pixel)
    out["rel_err_10"] = np.std(slope[rate == 10.0] / 10.0 - 1)
    # jumps of 10-30 sigma of the resultant difference they fall in
    n = 50000
    rate = 10 ** rng.uniform(0, 3, n)
    jump_read = rng.integers(2, pattern.last_read + 1, n)
    last_read = np.array([r[-1] for r in pattern.read_pattern])
    q = np.searchsorted(last_read, jump_read)
    t, nr, tau = pattern.mean_times, pattern.n_reads, pattern.tau
    a, b = np.maximum(q - 1, 0), np.maximum(q, 1)
    sigma = np.sqrt(READ_NOISE**2 * (1 / nr[a] + 1 / nr[b]) + rate * (tau[a] + tau[b] - 2 * t[a]) / GAIN)
    amp = rng.uniform(10, 30, n) * sigma
    res = synthetic_resultants(rate, pattern, read_noise=READ_NOISE, gain=GAIN, rng=rng, jump_read=jump_read,
                               jump_amplitude=amp)
    slope, err, gdq, njump, pdq = _flat_fit(method, res, pattern)
    flagged = (gdq & dq.JUMP_DET) != 0
    idx = np.arange(n)
    nres = pattern.n_resultants
    near = flagged[q, idx] | flagged[np.maximum(q - 1, 0), idx] | flagged[np.minimum(q + 1, nres - 1), idx]
    out["completeness"] = np.mean((njump > 0) & near)
    ok = (pdq & dq.DO_NOT_USE) == 0
    out["jump_pull_std"] = np.std(((slope - rate) / err)[ok])
    return out


def full_size_timing(method, pattern, size, detect_jumps):
    rng = np.random.default_rng(5)
    block_rows = 64
    rate = 10 ** rng.uniform(-0.5, 3.5, block_rows * size)
    jump_read = np.where(rng.random(rate.size) < 0.02, rng.integers(2, pattern.last_read + 1, rate.size), 0)
    block = synthetic_resultants(rate, pattern, read_noise=READ_NOISE, gain=GAIN, rng=rng, jump_read=jump_read,
                                 jump_amplitude=rng.uniform(50, 5000, rate.size))
    block = block.reshape(pattern.n_resultants, block_rows, size)
    cube = np.empty((pattern.n_resultants, size, size), np.float32)
    for y0 in range(0, size, block_rows):
        rows = min(block_rows, size - y0)
        cube[:, y0 : y0 + rows] = block[:, :rows]
    read_noise = np.full((size, size), READ_NOISE, np.float32)
    gain = np.full((size, size), GAIN, np.float32)
    fit_ramps(cube[:, :4], None, read_noise[:4], gain[:4], pattern, method=method)  # compile / load cache
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    fit = fit_ramps(cube, None, read_noise, gain, pattern, method=method, detect_jumps=detect_jumps)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    jumps = float(np.mean(fit.n_jumps > 0))
    del fit
    return elapsed, cpu, peak / 2**30, cube.nbytes / 2**30, jumps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=N_PIX_SCIENCE, help="pixels per side of the timing image")
    parser.add_argument("--table", type=int, default=4, help="MA table number")
    args = parser.parse_args(argv)
    pattern = ReadPattern(ma_table(args.table).as_list(), FRAME_TIME)
    print(f"MA table {args.table}: {pattern.n_resultants} resultants, {pattern.last_read} reads; "
          f"numba threads {numba.get_num_threads()} on {os.cpu_count()} cores")
    rows = []
    for method in METHODS:
        acc = accuracy(method, pattern)
        t_nojump, c_nojump, _, _, _ = full_size_timing(method, pattern, args.size, False)
        t_jump, c_jump, peak, cube_gib, jfrac = full_size_timing(method, pattern, args.size, True)
        rows.append((method, acc, (t_nojump, c_nojump), (t_jump, c_jump), peak, cube_gib, jfrac))
    header = (f"{'method':10s} {'|bias|max':>9s} {'rel.err@10':>10s} {'pull std per decade (0.3-1,1-10,..,1e3-5e3)':>46s} "
              f"{'jump compl':>10s} {'false jump':>10s} {'pull(jmp)':>9s} {'no-jump wall/cpu':>16s} {'jumps wall/cpu':>15s} "
              f"{'peak GiB':>8s}")
    print(header)
    print("-" * len(header))
    for method, acc, t0, t1, peak, cube_gib, jfrac in rows:
        pulls = ",".join(f"{p:.3f}" for p in acc["pull_std"])
        print(f"{method:10s} {acc['bias']:9.1e} {acc['rel_err_10']:10.4f} {pulls:>46s} {acc['completeness']:10.4f} "
              f"{acc['false_jumps']:10.1e} {acc['jump_pull_std']:9.3f} {t0[0]:7.2f}s/{t0[1]:6.2f}s "
              f"{t1[0]:6.2f}s/{t1[1]:6.2f}s {peak:8.2f}")
    print(f"timing image: {args.size}x{args.size}x{pattern.n_resultants} float32 ({rows[0][5]:.2f} GiB input, "
          f"not counted in peak), ~{rows[0][6]:.1%} of pixels with a jump; peak = extra memory traced during the fit;\n"
          f"wall = elapsed seconds, cpu = CPU seconds of all threads (wall on an idle machine ~ cpu / threads)")


if __name__ == "__main__":
    main()
