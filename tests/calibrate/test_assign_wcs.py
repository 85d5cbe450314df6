"""assign_wcs builds the same sky transform as the geometry, from a reference model."""

import numpy as np
import pytest

from romanflow import geometry
from romanflow.calibrate.assign_wcs import assign_wcs
from romanflow.detector import SMALL_SCIENCE_SIZE
from romanflow.errors import RomanflowError
from romanflow.exposure import RateImage

SIZE = SMALL_SCIENCE_SIZE


def _image(detector="WFI04", pointing=None, with_wcsinfo=True):
    pointing = pointing or geometry.pointing_for(150.1, 2.2, 75.0, va_scale=1.00003)
    zeros = np.zeros((SIZE, SIZE), np.float32)
    meta = {"instrument": {"detector": detector, "optical_element": "F158"},
            "exposure": {"type": "WFI_IMAGE", "start_time": "2027-01-01T00:00:00"}}
    if with_wcsinfo:
        info = geometry.wcsinfo_meta(detector, pointing, SIZE)
        del info["s_region"]
        meta["wcsinfo"] = info
        meta["velocity_aberration"] = {"scale_factor": pointing.va_scale}
    return RateImage(zeros, zeros.copy(), np.zeros((SIZE, SIZE), np.uint32), zeros.copy(), zeros.copy(), meta)


def test_assign_wcs_matches_geometry_and_records_provenance():
    pointing = geometry.pointing_for(150.1, 2.2, 75.0, va_scale=1.00003)
    image = assign_wcs(_image(pointing=pointing), geometry.distortion_transform("WFI04", SIZE))
    assert image.meta["cal_step"]["assign_wcs"] == "COMPLETE"
    assert image.meta["wcsinfo"]["s_region"] == geometry.s_region("WFI04", pointing, SIZE)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, SIZE - 1, (2, 300))
    ra, dec = image.wcs(x, y)
    ra_t, dec_t = geometry.DetectorProjection("WFI04", pointing, SIZE).pixel_to_world(x, y)
    assert np.abs(ra - ra_t).max() < 1e-10 and np.abs(dec - dec_t).max() < 1e-10
    assert image.wcs.bounding_box.bounding_box() == ((-0.5, SIZE - 0.5), (-0.5, SIZE - 0.5))
    assert image.wcs.available_frames == ["detector", "v2v3", "v2v3vacorr", "world"]


def test_assign_wcs_from_a_distortion_reference_file(tmp_path):
    from romanflow.formats.reference_io import read_reference, reference_meta, write_reference

    path = write_reference(tmp_path / "distortion.asdf", "distortion",
                           reference_meta("distortion", "WFI04", optical_element="F158"),
                           coordinate_distortion_transform=geometry.distortion_transform("WFI04", SIZE))
    reference = read_reference(path, "distortion")
    image = assign_wcs(_image(), reference)
    direct = assign_wcs(_image(), None)
    x = np.array([0.0, 100.0, SIZE - 1.0])
    np.testing.assert_allclose(image.wcs(x, x), direct.wcs(x, x), rtol=0, atol=1e-11)
    xb, yb = image.wcs.invert(*image.wcs(x, x))
    assert np.abs(xb - x).max() < 1e-4 and np.abs(yb - x).max() < 1e-4


def test_assign_wcs_needs_pointing():
    with pytest.raises(RomanflowError, match="wcsinfo"):
        assign_wcs(_image(with_wcsinfo=False), geometry.distortion_transform("WFI04", SIZE))
    image = _image()
    del image.meta["instrument"]["detector"]
    with pytest.raises(RomanflowError, match="detector"):
        assign_wcs(image, geometry.distortion_transform("WFI04", SIZE))


def test_no_distortion_reference_is_an_error_naming_the_type(tmp_path):
    from romanflow.errors import RomanflowError
    from romanflow.refdata.context import Context, Rule

    rules = {"distortion": [Rule({"instrument.detector": "N/A", "instrument.optical_element": "N/A"},
                                 {"2020-01-01T00:00:00": "N/A"})]}
    context = Context("no_distortion", rules, root=tmp_path)
    with pytest.raises(RomanflowError, match="'distortion' reference") as err:
        assign_wcs(_image(), None, context=context)
    assert "\n" not in str(err.value)
