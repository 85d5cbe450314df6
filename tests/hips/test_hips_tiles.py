"""The tile arithmetic of romanflow.kernels.hips_tiles against HEALPix's nested scheme."""

from __future__ import annotations

import numpy as np
import pytest

from romanflow.kernels import hips_tiles as kt


@pytest.mark.parametrize("width", [4, 8, 64])
def test_parent_tile_places_each_child_where_its_cells_are(width):
    """A parent pixel's cell (order k - 1 + b) is the parent of the 4 child cells it averages."""
    bits = width.bit_length() - 1
    parent_index = 37
    children = []
    for c in range(4):
        cells = kt.tile_cell_indices(5, 4 * parent_index + c, width).astype(np.float64)
        children.append((cells, np.ones((width, width))))
    value, weight = kt.parent_tile(children, width)
    # each child pixel holds its own cell index at order 5 + bits; the parent averages 4 siblings:
    # (4p + 0 + 4p + 1 + 4p + 2 + 4p + 3) / 4 = 4p + 1.5 where p is the parent cell at order 4 + bits
    parent_cells = kt.tile_cell_indices(4, parent_index, width).astype(np.float64)
    np.testing.assert_array_equal(value, 4 * parent_cells + 1.5)
    assert (weight == 4).all()
    assert kt.tile_local_index(width).max() == width * width - 1 and bits > 0


def test_absent_children_leave_their_quadrant_empty():
    width = 8
    one = (np.full((width, width), 2.0), np.ones((width, width)))
    value, weight = kt.parent_tile([one, None, None, None], width)
    rows, cols = kt.child_quadrant(0, width)
    assert np.all(value[rows, cols] == 2.0) and np.isnan(value).sum() == 3 * (width // 2) ** 2
    assert weight.sum() == 4 * (width // 2) ** 2


def test_bilinear_sample_is_exact_for_a_plane_and_refuses_invalid_neighbours():
    yy, xx = np.mgrid[0:20, 0:30]
    image = 3.0 + 0.5 * xx - 0.25 * yy
    valid = np.ones(image.shape, bool)
    valid[10, 10] = False
    x = np.array([0.0, 29.0, 4.3, 10.5, -0.1, 12.2])
    y = np.array([0.0, 19.0, 7.9, 10.5, 3.0, 2.7])
    out = kt.bilinear_sample(image, valid, x, y)
    truth = 3.0 + 0.5 * x - 0.25 * y
    np.testing.assert_allclose(out[[0, 1, 2, 5]], truth[[0, 1, 2, 5]], rtol=1e-6)
    assert np.isnan(out[3]) and np.isnan(out[4])  # next to an invalid pixel; outside


def test_weighted_combination_and_stretch():
    v, w = kt.combine_weighted([np.array([1.0, np.nan, 5.0]), np.array([3.0, 2.0, np.nan])],
                               [np.array([1.0, 1.0, 1.0]), np.array([3.0, 1.0, 0.0])])
    np.testing.assert_allclose(v, [2.5, 2.0, 5.0])
    np.testing.assert_allclose(w, [4.0, 1.0, 1.0])
    s = kt.stretch(np.array([-1.0, 0.0, 0.5, 1.0, 9.0, np.nan]), 0.0, 1.0)
    assert s[0] == 0 and s[1] == 0 and s[3] == pytest.approx(1) and s[4] == pytest.approx(1) and np.isnan(s[5])
    assert 0.5 < s[2] < 1  # asinh lifts the faint end
