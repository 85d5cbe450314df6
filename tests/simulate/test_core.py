"""End-to-end simulation at small size: rendered fluxes, positions, files, reproducibility."""

import asdf
import numpy as np
import pandas as pd
import pytest
import roman_datamodels.datamodels as rdm

from romanflow import geometry
from romanflow.detector import SMALL_SCIENCE_SIZE
from romanflow.formats.asdf_io import read_l1
from romanflow.psf import psf_image
from romanflow.simulate import ab_to_electrons, simulate, simulate_detector
from romanflow.simulate.scene import Scene

SIZE = SMALL_SCIENCE_SIZE
POINTING = geometry.pointing_for(270.0, 66.0, 30.0)


def _scene_at(pixels, kinds, mags, detector="WFI03", pointing=POINTING):
    """A scene with sources placed at given pixel positions of a detector (true pointing)."""
    proj = geometry.DetectorProjection(detector, pointing, SIZE)
    xy = np.asarray(pixels, dtype=float)
    ra, dec = proj.pixel_to_world(xy[:, 0], xy[:, 1])
    n = len(xy)
    t = pd.DataFrame({
        "source_id": np.arange(n), "type": kinds, "ra": ra, "dec": dec, "epoch": 2016.0,
        "pmra": 0.0, "pmdec": 0.0, "parallax": 0.0, "mag_F158": mags,
        "half_light_radius": [0.0 if k == "star" else 0.35 for k in kinds],
        "sersic_n": [1.5] * n, "axis_ratio": [0.6] * n, "position_angle": [40.0] * n,
        "bulge_fraction": [0.3 if k == "bulge_disk" else 0.0 for k in kinds],
        "bulge_half_light_radius": [0.1 if k == "bulge_disk" else 0.0 for k in kinds],
    })
    return Scene(t)


@pytest.mark.parametrize("kind", ["star", "sersic", "bulge_disk"])
def test_rendered_flux_and_position_of_an_isolated_source(kind):
    centre = (SIZE - 1) / 2 + 0.3
    scene = _scene_at([(centre, centre - 0.2)], [kind], [19.0])
    sim = simulate_detector(scene, "WFI03", "F158", pointing=POINTING, science_size=SIZE, seed=1, sky=False)
    image = sim.extra["sources_e"]
    truth = sim.sources.iloc[0]
    flux = ab_to_electrons(19.0, "F158")
    assert truth["flux_e"] == pytest.approx(flux)
    # everything within ±124 px of the source is on the array: the PSF box is ±128
    assert image.sum() == pytest.approx(flux, rel=0.01)
    # the centroid sits at the true position plus the PSF's own centroid offset (optical aberrations)
    psf = psf_image("WFI03", "F158", 2043.5, 2043.5, oversample=4, size=129)
    c = (psf.shape[0] - 1) / 2
    py, px = np.mgrid[0:psf.shape[0], 0:psf.shape[1]]
    half = 8 if kind == "star" else 40  # extended profiles need a box much larger than themselves
    within = (np.abs(px - c) < 4 * half) & (np.abs(py - c) < 4 * half)
    dx = ((psf * within * px).sum() / (psf * within).sum() - c) / 4
    dy = ((psf * within * py).sum() / (psf * within).sum() - c) / 4
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    box = (np.abs(xx - truth["x"]) < half) & (np.abs(yy - truth["y"]) < half)
    w = image * box
    assert (w * xx).sum() / w.sum() == pytest.approx(truth["x"] + dx, abs=0.03)
    assert (w * yy).sum() / w.sum() == pytest.approx(truth["y"] + dy, abs=0.03)
    # the scene was placed by pixel_to_world; the simulator's world_to_pixel gives it back (pixels;
    # measured 5.6e-10 in x and y, 6e-8 mas)
    assert truth["x"] == pytest.approx(centre, abs=1e-8)
    assert truth["y"] == pytest.approx(centre - 0.2, abs=1e-8)


def test_pointing_error_moves_sources_and_metadata_keeps_commanded():
    centre = (SIZE - 1) / 2
    scene = _scene_at([(centre, centre)], ["star"], [18.0])
    sim = simulate_detector(scene, "WFI03", "F158", pointing=POINTING, science_size=SIZE, seed=1,
                            pointing_error=(1.1, 0.0, 0.0), sky=False)
    truth = sim.sources.iloc[0]
    # 1.1" at the local pixel scale (0.1056" here): 10.35 pixels, 1.0925" (the pixels are not square)
    scale = geometry.local_pixel_scale(geometry.detector_gwcs("WFI03", POINTING, SIZE), centre, centre)[0]
    assert np.hypot(truth["x"] - centre, truth["y"] - centre) * scale == pytest.approx(1.1, rel=0.02)  # arcsec
    # the metadata keep the commanded pointing exactly; the true one is 1.1" east of it
    wcsinfo = sim.exposure.meta["wcsinfo"]
    assert (wcsinfo["ra_ref"], wcsinfo["dec_ref"], wcsinfo["roll_ref"]) == (
        POINTING.ra_ref, POINTING.dec_ref, POINTING.roll_ref)
    cosd = np.cos(np.radians(POINTING.dec_ref))
    true = sim.true_pointing
    assert (true.ra_ref - POINTING.ra_ref) * cosd * 3.6e6 == pytest.approx(1100.0, abs=1e-3)  # mas; measured 2e-8
    assert (true.dec_ref - POINTING.dec_ref) * 3.6e6 == pytest.approx(0.0, abs=1e-3)  # mas; measured 0


def test_simulate_writes_valid_files_and_is_reproducible(tmp_path):
    kwargs = dict(detectors=["WFI01", "WFI02"], optical_element="F158", n_sources=9000, science_size=SIZE,
                  seed=12, pointing=(270.0, 66.0, 0.0), pointing_error=(0.5, -0.3, 0.002))
    out = simulate(output_dir=tmp_path / "a", **kwargs)
    assert [p.name for p in out["l1"]] == ["r0000101001001001001_0001_wfi01_uncal.asdf",
                                          "r0000101001001001001_0001_wfi02_uncal.asdf"]
    for path in out["l1"]:
        with rdm.open(path) as model:
            model.validate()
            assert model.data.shape == (9, SIZE + 8, SIZE + 8) and model.data.dtype == np.uint16
            assert model.amp33.shape == (9, SIZE + 8, 128)
            assert model.meta.exposure.ma_table_id == "SCI0004"
            assert model.meta.exposure.nresultants == 9
            assert model.meta.instrument.optical_element == "F158"
            assert model.meta.wcsinfo.ra_ref == pytest.approx(270.0)
    # truth files
    for det, src_path, rate_path, cr_path, wcs_path in zip(["WFI01", "WFI02"], out["sources"], out["rate"],
                                                          out["cosmic_rays"], out["wcs"]):
        sources = pd.read_parquet(src_path)
        rate = np.load(rate_path)
        crs = pd.read_parquet(cr_path)
        assert rate.shape == (SIZE, SIZE) and np.all(rate > 0)
        assert sources["on_detector"].sum() > 20
        assert {"x", "y", "read", "amplitude_e"} <= set(crs.columns) and len(crs) > 5
        with asdf.open(wcs_path) as af:
            wcs = af["wcs"]
            on = sources[sources["on_detector"]]
            x, y = wcs.world_to_pixel_values(on["ra"].to_numpy(), on["dec"].to_numpy())
            # pixels; measured 2.2e-10 (2.4e-8 mas)
            np.testing.assert_allclose(x, on["x"], rtol=0, atol=1e-8)
            np.testing.assert_allclose(y, on["y"], rtol=0, atol=1e-8)
        l1 = read_l1(out["l1"][0 if det == "WFI01" else 1])
        # cosmic rays are there: the pixel jumps after the read of the hit by about amplitude/gain
        big = crs[(crs["amplitude_e"] > 2000) & (crs["read"] > 10) & (crs["read"] < 40)]
        if len(big):
            hit = big.iloc[0]
            ramp = l1.data[:, int(hit["y"]) + 4, int(hit["x"]) + 4].astype(float)
            assert ramp[-1] - ramp[0] > 0.5 * hit["amplitude_e"] / 2.2
    gaia = pd.read_parquet(out["gaia"])
    assert {"ra", "dec", "pmra", "pmdec", "parallax", "ref_epoch", "phot_g_mean_mag"} <= set(gaia.columns)

    again = simulate(output_dir=tmp_path / "b", **kwargs)
    a, b = read_l1(out["l1"][1]), read_l1(again["l1"][1])
    assert np.array_equal(a.data, b.data) and np.array_equal(a.amp33, b.amp33)
    other = simulate(output_dir=tmp_path / "c", **{**kwargs, "seed": 13, "detectors": ["WFI02"]})
    assert not np.array_equal(a.data, read_l1(other["l1"][0]).data)


def test_noiseless_rate_matches_the_mean_slope():
    """Resultant differences of a bright, flat region follow the truth rate times the flat."""
    from romanflow.detector_model import DetectorModel

    sim = simulate_detector(Scene(_scene_at([(5.0, 5.0)], ["star"], [30.0]).table), "WFI01", "F158",
                            pointing=POINTING, science_size=SIZE, seed=2)
    model = DetectorModel("WFI01", SIZE)
    raw = sim.exposure.data.astype(np.float64)
    t = sim.exposure.read_pattern.mean_times
    # the left/right reference columns of each row remove the bias drift and the common-mode
    # correlated noise read at the same instant (a minimal reference-pixel correction)
    row_ref = np.concatenate([raw[:, :, :4], raw[:, :, -4:]], axis=2).mean(axis=2)
    data = (raw - row_ref[:, :, None])[:, 4:-4, 4:-4]
    slope = (data[-1] - data[0]) / (t[-1] - t[0])
    expected = sim.rate_dn * model.flat("F158")[4:-4, 4:-4] + model.dark_rate[4:-4, 4:-4]
    good = (model.mask[4:-4, 4:-4] == 0)
    # non-linearity is < 0.5% at these levels; Poisson and read noise average out over 60k
    # pixels; the channels' own 1/f noise leaves ~1% of scatter
    assert np.mean(slope[good]) == pytest.approx(np.mean(expected[good]), rel=0.03)


def test_the_cone_cut_keeps_every_source_near_the_detector():
    from romanflow.simulate.core import _sources_within

    margin, size = 128, 4088
    projection = geometry.DetectorProjection("WFI07", geometry.pointing_for(270.0, 66.0, 60.0), size)
    grid = np.concatenate([np.linspace(-margin - 300.0, size - 1 + margin + 300.0, 301),
                           np.linspace(-4000.0, 8000.0, 61)])
    x, y = (v.ravel() for v in np.meshgrid(grid, grid))
    x = np.concatenate([x, [-margin, size - 1 + margin] * 2])  # the corners of the grown array
    y = np.concatenate([y, [-margin] * 2 + [size - 1 + margin] * 2])
    ra, dec = projection.pixel_to_world(x, y)
    kept = _sources_within(projection, ra, dec, size, margin)
    near = (x >= -margin) & (x <= size - 1 + margin) & (y >= -margin) & (y <= size - 1 + margin)
    assert np.all(np.diff(kept) > 0)
    assert set(np.nonzero(near)[0]) <= set(kept)
    far = np.hypot(x - (size - 1) / 2, y - (size - 1) / 2) > 0.8 * size
    assert not np.isin(np.nonzero(far)[0], kept).any()  # the far ones are cut


def test_dark_decay_is_added_as_the_kernel_gives_it():
    from romanflow.detector import FRAME_TIME, ReadPattern, ma_table
    from romanflow.kernels.dark_decay import dark_decay_signal
    from romanflow.kernels.dark_decay import add_dark_decay

    pattern = ReadPattern(ma_table(4).as_list(), FRAME_TIME)
    shape = (12, 256)
    resultants = np.random.default_rng(3).normal(1000.0, 5.0, (pattern.n_resultants,) + shape).astype(np.float32)
    expected = resultants + np.stack([dark_decay_signal(0.4, 23.0, pattern, shape, k)
                                      for k in range(pattern.n_resultants)])
    add_dark_decay(resultants, 0.4, 23.0, pattern)
    np.testing.assert_array_equal(resultants, expected)
