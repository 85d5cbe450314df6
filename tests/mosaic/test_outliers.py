import numpy as np
import pytest

from romanflow import dq as dqflags
from romanflow.formats import write_l2
from romanflow.mosaic.outliers import abs_derivative, outlier_table_path, read_outlier_table
from romanflow.mosaic.pipeline import make_mosaic

DITHERS = [(0.0, 0.0), (0.143, 0.077), (-0.066, 0.209), (0.264, -0.132)]
HITS = [(100, 50), (101, 50), (102, 50), (20, 20), (200, 180), (200, 181), (200, 182)]  # (y, x) in input 1


@pytest.fixture(scope="module")
def l2_files(scene, tmp_path_factory):
    folder = tmp_path_factory.mktemp("l2")
    clean, hit = [], []
    for k, d in enumerate(DITHERS):
        image = scene.image(k, d, sky=0.5 + 0.05 * k)
        clean.append(write_l2(image, folder / f"clean{k}_cal.asdf"))
        if k == 1:
            for y, x in HITS:
                image.data[y, x] += 3.0  # ~45 sigma cosmic-ray-like hits
        hit.append(write_l2(image, folder / f"hit{k}_cal.asdf"))
    return clean, hit


def test_no_outliers_in_a_clean_stack_of_stars(scene, l2_files, tmp_path):
    clean, _ = l2_files
    product, table = make_mosaic(clean, scene.wcs, tmp_path / "clean_coadd.asdf")
    assert len(table) == 0
    assert len(read_outlier_table(outlier_table_path(tmp_path / "clean_coadd.asdf"))) == 0


def test_injected_outliers_are_rejected_and_recorded(scene, l2_files, tmp_path):
    clean, hit = l2_files
    out = tmp_path / "hit_coadd.asdf"
    product, table = make_mosaic(hit, scene.wcs, out, skycell=scene.cell)
    found = {(int(r["y"]), int(r["x"])) for r in table if r["input"] == "hit1_cal.asdf"}
    assert found == set(HITS)
    assert set(table["input"]) == {"hit1_cal.asdf"}
    back = read_outlier_table(outlier_table_path(out))
    assert len(back) == len(HITS) and back["ra"].unit == "deg"
    np.testing.assert_array_equal(np.sort(back["x"]), np.sort(table["x"]))
    assert np.all(back["value"] - back["blot"] > back["threshold"])
    # the rejected pixels do not reach the mosaic: it matches the clean mosaic there
    reference, _ = make_mosaic(clean, scene.wcs, None)
    for r in back:
        x, y = scene.wcs.world_to_pixel_values(r["ra"], r["dec"])
        xi, yi = int(round(float(x))), int(round(float(y)))
        patch = (slice(yi - 1, yi + 2), slice(xi - 1, xi + 2))
        np.testing.assert_allclose(product.data[patch], reference.data[patch], atol=0.05)
    import roman_datamodels.datamodels as rdm

    with rdm.open(out) as model:
        assert model.meta.cal_step.outlier_detection == "COMPLETE"


def test_flagging_sets_outlier_and_do_not_use(scene):
    from romanflow.mosaic.outliers import flag_outliers

    rng = np.random.default_rng(1)
    blot = np.zeros((50, 50), np.float32)
    data = rng.normal(0, 1, (50, 50)).astype(np.float32)
    data[10, 10] = 8.0  # above snr1 = 5
    data[10, 11] = 4.5  # above snr2 = 4 only, next to a primary: flagged
    data[30, 30] = 4.5  # above snr2 only, isolated: kept
    flagged, primary, _ = flag_outliers(data, blot, np.ones_like(data), np.ones(data.shape, bool))
    assert flagged[10, 10] and flagged[10, 11] and not flagged[30, 30]
    assert primary[10, 10] and not primary[10, 11]
    assert dqflags.OUTLIER | dqflags.DO_NOT_USE == 129


def test_abs_derivative():
    img = np.zeros((5, 5))
    img[2, 2] = 3.0
    d = abs_derivative(img)
    assert d[2, 2] == 3.0 and d[1, 2] == 3.0 and d[0, 0] == 0.0


def test_detectors_with_different_photometric_conversions_flag_nothing(scene, tmp_path):
    """Inputs are compared in DN/s: where detectors' conversions differ by a few percent, the same
    star differs by as much, which the derivative term of the threshold absorbs."""
    images = []
    for k, d in enumerate(DITHERS):
        image = scene.image(k, d, noise=False)
        if k % 2:
            gain = 1.06  # 6% more MJy/sr per DN/s: 6% fewer DN/s for the same sky
            image.data = (image.data / gain).astype(np.float32)
            image.err = (image.err / gain).astype(np.float32)
            image.var_poisson = (image.var_poisson / gain**2).astype(np.float32)
            image.var_rnoise = (image.var_rnoise / gain**2).astype(np.float32)
            image.meta["photometry"] = dict(image.meta["photometry"],
                                            conversion_megajanskys=image.meta["photometry"]["conversion_megajanskys"] * gain)
        images.append(write_l2(image, tmp_path / f"conv{k}_cal.asdf"))
    product, table = make_mosaic(images, scene.wcs, tmp_path / "conv_coadd.asdf")
    assert len(table) == 0, table


def test_nanmedian_axis0_equals_numpy():
    import warnings

    from romanflow.mosaic.outliers import nanmedian_axis0

    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 32):
        stack = rng.normal(size=(n, 7, 9)).astype(np.float32)
        stack[rng.uniform(size=stack.shape) < 0.3] = np.nan
        stack[:, 0, 0] = np.nan  # all NaN: stays NaN
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanmedian(stack, axis=0)
        np.testing.assert_allclose(nanmedian_axis0(stack), expected, rtol=1e-6, equal_nan=True)


def test_median_of_singles_read_in_row_blocks_matches_in_memory_median(tmp_path):
    """Singles written as their covered boxes and read back in small row blocks give the full median."""
    import warnings

    from romanflow.mosaic.outliers import _write_single, median_of_singles

    rng = np.random.default_rng(4)
    shape = (40, 30)
    full = []
    singles = []
    for k in range(6):
        data = rng.normal(size=shape).astype(np.float32)
        weight = np.zeros(shape, np.float32)
        y0, x0 = rng.integers(0, 15, 2)
        weight[y0:y0 + 20, x0:x0 + 12] = 1.0
        weight[y0, x0] = 0.2  # below maskpt x median weight: ignored
        singles.append(_write_single(data, weight, 0.7, tmp_path / f"s{k}.f32"))
        full.append(np.where(weight >= 0.7, data, np.nan))
    singles.append(_write_single(np.ones(shape, np.float32), np.zeros(shape, np.float32), 0.7, tmp_path / "e.f32"))
    assert singles[-1] is None  # an input that covers nothing is not stored
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(np.stack(full), axis=0)
    got = median_of_singles(singles, shape, block_bytes=6 * 30 * 4 * 3)  # 3 rows per block
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)

