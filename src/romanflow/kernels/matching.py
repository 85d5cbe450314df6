"""One-to-one matching of injected sources to detected ones, by position and brightness.

Positions are in any common flat unit (pixels or arcsec on a tangent plane);
brightness as AB magnitudes (NaN where unknown).
"""

from __future__ import annotations

import numpy as np


def match_sources(x_in, y_in, mag_in, x_out, y_out, mag_out, *, radius, mag_tolerance: float = 1.0):
    """Pair injected sources with detections one to one.

    Every pair closer than ``radius`` is a candidate, scored by
    ``(d / radius)² + (Δmag / mag_tolerance)²`` (the magnitude term is 0 where a
    magnitude is NaN); pairs are accepted best score first, each injected source
    and each detection at most once. Two injected sources blended into one
    detection thus give it to the one whose position and brightness fit best.

    Parameters
    ----------
    x_in, y_in, mag_in : array_like (n,)
        Injected positions and magnitudes.
    x_out, y_out, mag_out : array_like (m,)
        Detected positions and magnitudes.
    radius : float or array_like (n,)
        Match radius of each injected source (position unit).
    mag_tolerance : float
        Magnitude difference that weighs as much as a separation of ``radius``.

    Returns
    -------
    index : ndarray (n,) int64
        Matched detection of each injected source, −1 if none.
    separation : ndarray (n,)
        Distance to it (NaN if none).
    n_candidates : ndarray (n,) int64
        Detections within ``radius`` of each injected source.
    """
    from scipy.spatial import cKDTree

    x_in, y_in, mag_in = (np.asarray(v, np.float64) for v in (x_in, y_in, mag_in))
    x_out, y_out, mag_out = (np.asarray(v, np.float64) for v in (x_out, y_out, mag_out))
    n, m = x_in.size, x_out.size
    radius = np.broadcast_to(np.asarray(radius, np.float64), (n,))
    index = np.full(n, -1, np.int64)
    separation = np.full(n, np.nan)
    n_candidates = np.zeros(n, np.int64)
    if n == 0 or m == 0:
        return index, separation, n_candidates
    tree = cKDTree(np.column_stack([x_out, y_out]))
    rows, cols, scores, dists = [], [], [], []
    for i, near in enumerate(tree.query_ball_point(np.column_stack([x_in, y_in]), r=radius)):
        if not near:
            continue
        near = np.asarray(near, np.int64)
        d = np.hypot(x_out[near] - x_in[i], y_out[near] - y_in[i])
        dm = np.nan_to_num(mag_out[near] - mag_in[i], nan=0.0)
        n_candidates[i] = near.size
        rows.append(np.full(near.size, i))
        cols.append(near)
        dists.append(d)
        scores.append((d / radius[i]) ** 2 + (dm / mag_tolerance) ** 2)
    if not rows:
        return index, separation, n_candidates
    rows, cols, scores, dists = (np.concatenate(v) for v in (rows, cols, scores, dists))
    taken = np.zeros(m, bool)
    for k in np.argsort(scores, kind="stable"):
        i, j = rows[k], cols[k]
        if index[i] < 0 and not taken[j]:
            index[i] = j
            separation[i] = dists[k]
            taken[j] = True
    return index, separation, n_candidates


def neighbours_within(x, y, radius, x_other=None, y_other=None) -> np.ndarray:
    """Number of points of a second set (or of the same set, itself excluded) within ``radius`` of each point."""
    from scipy.spatial import cKDTree

    pts = np.column_stack([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    same = x_other is None
    other = pts if same else np.column_stack([np.asarray(x_other, np.float64), np.asarray(y_other, np.float64)])
    if len(pts) == 0 or len(other) == 0:
        return np.zeros(len(pts), np.int64)
    counts = np.asarray([len(v) for v in cKDTree(other).query_ball_point(pts, r=radius)], np.int64)
    return counts - 1 if same else counts
