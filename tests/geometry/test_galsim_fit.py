"""Agreement with galsim.roman, and the shipped coefficients against a fresh fit."""

import numpy as np
import pytest

from geometry_helpers import PIX_X, PIX_Y, sep_mas
from romanflow import geometry as g
from romanflow.detector import DETECTORS
from romanflow.geometry.galsim_fit import fit_distortion, galsim_wcs
from romanflow.geometry.distortion import PIXEL_CENTER, PIXEL_NORM, V_NORM
from romanflow.kernels.projection import horner2d

#: Bound (mas) on shipped vs refitted positions over each detector.
REGENERATION_BOUND_MAS = 1e-3


@pytest.mark.parametrize("ra, dec, pa", [(200.0, -40.0, 240.0), (10.0, 85.0, 60.0), (33.0, 20.0, 240.0)])
def test_matches_galsim_all_detectors(ra, dec, pa):
    # At these rolls galsim's focal-plane axes lie along the sky's north, where its
    # per-detector construction is that of a rigid focal plane.
    pointing = g.pointing_for(ra, dec, pa)
    wcs = galsim_wcs(pointing)
    for name in DETECTORS:
        ra_g, dec_g = wcs[name].toWorld(PIX_X + 1.0, PIX_Y + 1.0, units="deg")
        ra_f, dec_f = g.DetectorProjection(name, pointing).pixel_to_world(PIX_X, PIX_Y)
        ra_w, dec_w = g.detector_gwcs(name, pointing)(PIX_X, PIX_Y)
        assert sep_mas(ra_g, dec_g, ra_f, dec_f).max() < 1.0, f"{name}: fast path > 1 mas from galsim"
        assert sep_mas(ra_g, dec_g, ra_w, dec_w).max() < 1.0, f"{name}: gwcs > 1 mas from galsim"


def test_galsim_other_rolls_within_its_nonrigidity():
    # galsim orients each detector from the sky's north at the detector centre,
    # which departs from a rigid focal plane by a few mas at other rolls.
    pointing = g.pointing_for(150.0, -10.0, 0.0)
    wcs = galsim_wcs(pointing)
    worst = 0.0
    for name in DETECTORS:
        ra_g, dec_g = wcs[name].toWorld(PIX_X + 1.0, PIX_Y + 1.0, units="deg")
        ra_f, dec_f = g.DetectorProjection(name, pointing).pixel_to_world(PIX_X, PIX_Y)
        worst = max(worst, sep_mas(ra_g, dec_g, ra_f, dec_f).max())
    assert worst < 10.0, f"{worst:.2f} mas from galsim"


def test_shipped_coefficients_reproduce_a_fresh_fit():
    """Refit from galsim.roman: the shipped polynomials give the same positions over every detector."""
    shipped = g.distortion_table()
    refit = fit_distortion()
    grid = np.linspace(-0.5, 4087.5, 41)
    x, y = (a.ravel() for a in np.meshgrid(grid, grid))
    u, v = (x - PIXEL_CENTER) / PIXEL_NORM, (y - PIXEL_CENTER) / PIXEL_NORM
    worst_mas, worst_pix = 0.0, 0.0
    for name in DETECTORS:
        a, b = shipped[name], refit[name]
        dv2 = horner2d(a.fx, u, v) - horner2d(b.fx, u, v)
        dv3 = horner2d(a.fy, u, v) - horner2d(b.fy, u, v)
        worst_mas = max(worst_mas, np.hypot(dv2, dv3).max() * 1000.0)
        # inverse polynomials (x and y), evaluated at the refit's (V2, V3) of the same pixels
        v2, v3 = horner2d(b.fx, u, v), horner2d(b.fy, u, v)
        for inv_a, inv_b in ((a.gx, b.gx), (a.gy, b.gy)):
            pa = horner2d(inv_a, (v2 - a.v2c) / V_NORM, (v3 - a.v3c) / V_NORM)
            pb = horner2d(inv_b, (v2 - b.v2c) / V_NORM, (v3 - b.v3c) / V_NORM)
            worst_pix = max(worst_pix, np.abs(pa - pb).max() * PIXEL_NORM)
        assert abs(a.fit_rms_mas - b.fit_rms_mas) < 1e-6, f"{name}: fit RMS differs by > 1e-6 mas"
    assert worst_mas < REGENERATION_BOUND_MAS, \
        f"shipped vs refitted (V2, V3) differ by {worst_mas:.2e} mas (bound {REGENERATION_BOUND_MAS} mas)"
    assert worst_pix < 1e-6, f"shipped vs refitted inverse polynomials differ by {worst_pix:.2e} pixel (bound 1e-6)"
