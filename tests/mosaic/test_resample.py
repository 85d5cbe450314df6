import gc
import weakref

import numpy as np
import pytest

from romanflow.errors import RomanflowError
from romanflow.mosaic.resample import resample, sky_level, write_mosaic

DITHERS = [(0.0, 0.0), (0.143, 0.077), (-0.066, 0.209)]  # arcsec


def _aperture_sums(product, scene, radius=12.0, sky=0.0):
    ra, dec, _ = scene.stars
    x, y = product.wcs.world_to_pixel_values(ra, dec)
    yy, xx = np.mgrid[0:product.data.shape[0], 0:product.data.shape[1]]
    sums = []
    for xi, yi in zip(x, y):
        m = np.hypot(xx - xi, yy - yi) < radius
        assert np.isfinite(product.data[m]).all()
        sums.append(np.sum(product.data[m] - sky))
    return np.array(sums)


def test_flux_is_conserved(scene):
    images = [scene.image(k, d, noise=False) for k, d in enumerate(DITHERS)]
    product = resample(iter(images), scene.wcs)
    assert abs(product.meta["sky_level"] * 3.9 - 0.5) < 0.02  # background kept (per 0.055" pixel)
    flux = _aperture_sums(product, scene, sky=product.meta["sky_level"])
    ratio = flux / scene.stars[2]
    assert np.all(np.abs(ratio - 1) < 0.005), ratio
    # turbo approximates the square kernel's overlaps: flux holds to ~1 % per star
    for kernel, tolerance in (("square", 0.005), ("turbo", 0.015)):
        product = resample(iter(images[:1]), scene.wcs, kernel=kernel, pixfrac=1.0, weight_type="exptime")
        ratio = _aperture_sums(product, scene, sky=product.meta["sky_level"]) / scene.stars[2]
        assert np.all(np.abs(ratio - 1) < tolerance), (kernel, ratio)


@pytest.mark.parametrize("n_inputs, pixfrac", [(1, 1.0), (3, 1.0), (3, 0.7)])
def test_error_map_matches_blank_sky_scatter(scene, n_inputs, pixfrac):
    images = [scene.image(k, d, stars=False) for k, d in enumerate(DITHERS[:n_inputs])]
    product = resample(iter(images), scene.wcs, pixfrac=pixfrac)
    w = product.weight
    good = np.isfinite(product.data) & (w > 0.9 * np.median(w[w > 0]))
    ratio = np.std(product.data[good]) / np.median(product.err[good])
    assert abs(ratio - 1) < 0.1, ratio
    assert np.all(product.exposure_time[good] > 0)
    assert np.max(product.exposure_time) == pytest.approx(139.8 * n_inputs, rel=1e-6)


def test_sky_matching_levels_inputs(scene):
    # second input shifted by ~9" so parts of the grid see one input, parts both
    a = scene.image(0, (0, 0), stars=False, sky=0.3)
    b = scene.image(1, (9.0, 0), stars=False, sky=0.9)
    assert sky_level(a.data, np.ones(a.data.shape, bool)) == pytest.approx(0.3, abs=0.01)
    for matched in (True, False):
        product = resample(iter([a, b]), scene.wcs, sky_match=matched)
        ctx = product.context[..., 0]
        levels = [np.nanmedian(product.data[ctx == c]) for c in (1, 2, 3)]
        spread = max(levels) - min(levels)
        if matched:
            assert spread < 0.005, levels
        else:
            assert spread > 0.05, levels


def test_inputs_are_streamed_one_at_a_time(scene):
    alive = []

    def produce():
        for k, d in enumerate(DITHERS):
            gc.collect()
            assert all(ref() is None for ref in alive), "a previous input is still held"
            image = scene.image(k, d)
            alive.append(weakref.ref(image.data.base if image.data.base is not None else image.data))
            yield image
            del image

    product = resample(produce(), scene.wcs)
    assert product.meta["n_inputs"] == 3


def test_mosaic_file_validates(scene, tmp_path):
    import roman_datamodels.datamodels as rdm

    product = resample(iter([scene.image(0)]), scene.wcs)
    path = write_mosaic(product, tmp_path / "cell_coadd.asdf", skycell=scene.cell, optical_element="F158")
    with rdm.open(path) as model:
        assert type(model).__name__ == "MosaicModel"
        model.validate()
        np.testing.assert_array_equal(np.asarray(model.data), product.data)
        assert np.asarray(model.exposure_time).shape == product.data.shape
        assert model.meta.wcsinfo.skycell_name == scene.cell
        assert model.meta.calibration_software_name == "romanflow"
        corners = np.array(model.meta.wcsinfo.s_region.split()[2:], float).reshape(4, 2)
        np.testing.assert_allclose(corners[0], scene.wcs.pixel_to_world_values(-0.5, -0.5), atol=1e-9)
        covered = np.isfinite(product.data)
        assert model.meta.statistics.good_pixel_fraction == pytest.approx(covered.mean())
        assert model.meta.statistics.image_median == pytest.approx(np.median(product.data[covered]))
        ra, dec = model.meta.wcs(100.0, 200.0)
        np.testing.assert_allclose([ra, dec], scene.wcs.pixel_to_world_values(100.0, 200.0), atol=1e-10)
    assert not list(tmp_path.glob(".*partial"))


def test_input_without_wcs_is_refused(scene):
    image = scene.image(0)
    image.wcs = None
    with pytest.raises(RomanflowError, match="no WCS"):
        resample(iter([image]), scene.wcs)
    with pytest.raises(RomanflowError, match="kernel"):
        resample(iter([scene.image(0)]), scene.wcs, kernel="box")


def test_surface_brightness_mosaic_conserves_flux_in_physical_units(scene):
    """The L3 convention: MJy/sr; the sum over a star times the output pixel area is its flux."""
    from romanflow.mosaic.synthetic import PHOTMJSR

    images = [scene.image(k, d, noise=False) for k, d in enumerate(DITHERS)]
    product = resample(iter(images), scene.wcs, units="surface_brightness")
    out_area = np.abs(np.linalg.det(scene.wcs.pixel_scale_matrix)) * (np.pi / 180) ** 2  # sr
    in_area = images[0].meta["photometry"]["pixel_area"]  # sr of an L2 pixel (nominal 0.11")
    mjy = _aperture_sums(product, scene, sky=product.meta["sky_level"]) * out_area
    # a star of F DN/s is F * c * Omega_nominal MJy: the conversion refers to the nominal
    # pixel area, whatever the distorted pixel's own area (2% smaller here)
    expected = scene.stars[2] * PHOTMJSR * in_area
    ratio = mjy / expected
    assert np.all(np.abs(ratio - 1) < 0.005), ratio


def test_flux_is_conserved_when_read_noise_variance_follows_the_signal(scene):
    """In real L2 files var_rnoise grows with the rate (optimal ramp weighting); weights must not."""
    images = []
    for k, d in enumerate(DITHERS):
        image = scene.image(k, d, noise=False)
        image.var_rnoise = (image.var_rnoise * (1.0 + np.clip(image.data, 0, None))).astype(np.float32)
        images.append(image)
    product = resample(iter(images), scene.wcs)
    ratio = _aperture_sums(product, scene, sky=product.meta["sky_level"]) / scene.stars[2]
    assert np.all(np.abs(ratio - 1) < 0.005), ratio


def test_mosaic_records_the_time_span_of_its_inputs(scene, tmp_path):
    import astropy.units as u
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    images = []
    for k, start in enumerate(("2027-06-01T00:00:00", "2027-06-03T12:00:00")):
        image = scene.image(k, DITHERS[k])
        t0 = Time(start, scale="utc")
        image.meta["exposure"].update(start_time=t0, end_time=t0 + 139.8 * u.s)
        images.append(image)
    path = write_mosaic(resample(iter(images), scene.wcs), tmp_path / "cell_coadd.asdf", optical_element="F158")
    with rdm.open(path) as model:
        info = model.meta.coadd_info
        assert info.time_first.isot.startswith("2027-06-01T00:00:00")
        assert info.time_last.isot.startswith("2027-06-03T12:02:19")
        assert abs(info.time_mean.mjd - (Time("2027-06-01T00:01:09.9").mjd + Time("2027-06-03T12:01:09.9").mjd) / 2) < 1e-6
        model.validate()


def test_an_input_without_a_usable_pixel_is_left_out_with_a_warning(scene, caplog):
    empty = scene.image(5)
    empty.data[:] = np.nan
    empty.meta["filename"] = "empty_cal.asdf"
    with caplog.at_level("WARNING", logger="romanflow.mosaic"):
        product = resample([scene.image(0), empty, scene.image(1)], scene.wcs, sky_match=False)
    assert any("empty_cal.asdf: no usable pixel" in r.getMessage() for r in caplog.records)
    assert product.meta["n_inputs"] == 2 and product.meta["left_out"] == [1]
    assert [i.name for i in product.inputs] == [scene.image(0).meta["filename"], scene.image(1).meta["filename"]]


def test_no_usable_pixel_at_all_is_an_error(scene):
    from romanflow.mosaic.resample import NoUsablePixelsError
    from romanflow.mosaic.skycells import cutout_wcs

    flagged = scene.image(0)
    flagged.dq[:] = 1  # DO_NOT_USE everywhere
    empty = scene.image(1)
    empty.data[:] = np.nan
    with pytest.raises(NoUsablePixelsError, match="none of the 2 input"):
        resample([flagged, empty], scene.wcs)
    # inputs with good pixels, but a grid away from them: a corner of the cutout the data do not reach
    far = cutout_wcs(scene.wcs, 0, 0, 20, 20)
    with pytest.raises(NoUsablePixelsError, match="falls on the output grid"):
        resample([scene.image(0)], far)
