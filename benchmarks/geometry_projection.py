"""Pixel <-> sky speed of one full detector: DetectorProjection (numba) vs gwcs.

Run: ``.venv/bin/python -m benchmarks.geometry_projection``
"""

from __future__ import annotations

import time

import numpy as np

from romanflow import geometry


def _timed(func, *args, repeat=2):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    n = 4088
    pointing = geometry.pointing_for(33.0, 20.0, 10.0)
    proj = geometry.DetectorProjection("WFI07", pointing)
    wcs = geometry.detector_gwcs("WFI07", pointing)
    y, x = np.mgrid[0:n, 0:n].astype(float)
    proj.pixel_to_world(x[:2, :2], y[:2, :2])  # compile / load the cached kernels
    proj.world_to_pixel(np.array([33.0]), np.array([20.0]))
    rows = []
    t, (ra, dec) = _timed(proj.pixel_to_world, x, y)
    rows.append(("fast pixel_to_world", x.size, t))
    t, (xb, yb) = _timed(proj.world_to_pixel, ra, dec)
    rows.append(("fast world_to_pixel", x.size, t))
    round_trip = max(np.abs(xb - x).max(), np.abs(yb - y).max())
    sub = (slice(None, None, 10), slice(None, None, 10))  # 1/100 of the pixels
    t, (ra_w, dec_w) = _timed(wcs, x[sub], y[sub])
    rows.append(("gwcs forward (1/100 grid)", x[sub].size, t))
    t, _ = _timed(wcs.invert, ra_w, dec_w, repeat=1)
    rows.append(("gwcs invert (1/100 grid)", x[sub].size, t))
    agree = max(np.abs(ra_w - ra[sub]).max(), np.abs(dec_w - dec[sub]).max())
    print(f"{'operation':28s} {'points':>10s} {'time s':>8s} {'Mpts/s':>8s}")
    for name, npts, t in rows:
        print(f"{name:28s} {npts:10d} {t:8.3f} {npts / t / 1e6:8.2f}")
    print(f"round trip max |dpix| = {round_trip:.1e}; gwcs vs fast max |ddeg| = {agree:.1e}")


if __name__ == "__main__":
    main()
