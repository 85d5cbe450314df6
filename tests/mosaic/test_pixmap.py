import numpy as np
from drizzle.utils import calc_pixmap

from romanflow.geometry import DetectorProjection, detector_gwcs
from romanflow.mosaic.pixmap import fast_pixmap


def test_fast_pixmap_matches_calc_pixmap(scene):
    wcs_in = detector_gwcs("WFI07", scene.pointing, 248)
    reference = calc_pixmap(wcs_in, scene.wcs)
    result = fast_pixmap(wcs_in, (248, 248), scene.wcs, step=32, tolerance=0.01)
    assert result.max_error < 0.01
    assert np.max(np.abs(result.pixmap - reference)) < 0.01
    # the same through the fast detector projection
    via_projection = fast_pixmap(DetectorProjection("WFI07", scene.pointing, 248), (248, 248), scene.wcs)
    assert np.max(np.abs(via_projection.pixmap - reference)) < 0.01


def test_area_ratio_is_the_jacobian(scene):
    wcs_in = detector_gwcs("WFI07", scene.pointing, 248)
    result = fast_pixmap(wcs_in, (248, 248), scene.wcs)
    X, Y = result.pixmap[..., 0], result.pixmap[..., 1]
    dXdy, dXdx = np.gradient(X)
    dYdy, dYdx = np.gradient(Y)
    jac = np.abs(dXdx * dYdy - dXdy * dYdx)
    np.testing.assert_allclose(result.area_ratio[2:-2, 2:-2], jac[2:-2, 2:-2], rtol=1e-5)
    # 0.11" detector pixels on a 0.055" grid: close to 4 output pixels per input pixel
    assert 3.7 < np.median(result.area_ratio) < 4.1


def test_step_is_refined_until_tolerance(scene):
    wcs_in = detector_gwcs("WFI07", scene.pointing, 248)
    result = fast_pixmap(wcs_in, (248, 248), scene.wcs, step=124, tolerance=1e-7)
    assert result.step < 124
    assert result.max_error <= 1e-7 or result.step == 4
