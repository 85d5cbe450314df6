"""Point-source detection: completeness, false detections, flags, catalog files."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from romanflow import dq as dqbits
from romanflow import geometry
from romanflow.astrometry.detect import detect_point_sources, read_source_catalog, source_catalog, write_source_catalog
from romanflow.errors import InputFileError
from romanflow.psf import psf_image, psf_model
from romanflow.source_flags import SOURCE_FLAGS

from synthetic import NOISE, SKY, flux_for_snr, rate_image, render

SIZE = 248
POINTING = geometry.pointing_for(150.0, 2.0, 30.0)


def _grid_positions(rng, spacing=16, margin=10):
    g = np.arange(margin, SIZE - margin, spacing, dtype=float)
    x, y = (a.ravel() for a in np.meshgrid(g, g))
    return x + rng.uniform(-3, 3, x.size), y + rng.uniform(-3, 3, y.size)


def _true_snr(star, err, psf_native):
    """PSF-fit S/N a star should reach: flux / noise of the optimal PSF-weighted sum."""
    ix, iy = int(round(star["x"])), int(round(star["y"]))
    h = psf_native.shape[0] // 2
    box = err[iy - h:iy + h + 1, ix - h:ix + h + 1]
    return star["flux_dn"] * np.sqrt(np.sum(psf_native**2 / box**2))


def test_completeness_spurious_and_fluxes_against_simulated_truth(simulated, capsys):
    from scipy.spatial import cKDTree

    from romanflow.formats.asdf_io import read_l2

    found, n_true, spurious, n_bright, ratios = 0, 0, 0, 0, []
    for path, truth in zip(simulated["l2"], simulated["truth"]):
        image = read_l2(path)
        cat = source_catalog(image)
        n = image.data.shape[0]
        err = np.asarray(image.err, float)
        psf_native = psf_image(image.meta["instrument"]["detector"], "F158", 2043.5, 2043.5, size=9)
        stars = truth[(truth["type"] == "star") & truth["x"].between(4, n - 5) & truth["y"].between(4, n - 5)]
        snr = np.array([_true_snr(s, err, psf_native) for _, s in stars.iterrows()])
        x, y = cat["x"].value, cat["y"].value
        d, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([stars["x"], stars["y"]]))
        found += int(np.sum(d[snr > 20] < 1.0))
        n_true += int(np.sum(snr > 20))
        # detections above S/N 20 (fit box on the array) that are no simulated source; the wings of bright
        # stars off the array or at its edge (which no fit can model) are left out
        d_any, _ = cKDTree(np.column_stack([truth["x"], truth["y"]])).query(np.column_stack([x, y]))
        at_edge = ~(truth["x"].between(2, n - 3) & truth["y"].between(2, n - 3))
        off = truth[at_edge & (truth["flux_dn"] > 2000)]
        if len(off):
            d_off, _ = cKDTree(np.column_stack([off["x"], off["y"]])).query(np.column_stack([x, y]))
        else:
            d_off = np.full(len(x), np.inf)
        on_array = (np.asarray(cat["flags"]) & SOURCE_FLAGS["EDGE"]) == 0
        bright = (np.asarray(cat["snr"]) > 20) & (d_off > 25) & on_array
        spurious += int(np.sum(bright & (d_any > 1.5)))
        n_bright += int(bright.sum())
        # PSF fluxes of bright isolated stars against the simulated flux (DN/s)
        _, j = cKDTree(np.column_stack([stars["x"], stars["y"]])).query(np.column_stack([x, y]))
        good = (np.asarray(cat["snr"]) > 100) & (np.asarray(cat["flags"]) == 0) & (d_any < 0.5)
        ratios.append(cat["flux"].value[good] / stars["flux_dn"].to_numpy()[j[good]])
    ratios = np.concatenate(ratios)
    with capsys.disabled():
        print(f"\ncompleteness {found}/{n_true}, spurious {spurious}/{n_bright} (S/N > 20); "
              f"PSF flux / true flux: median {np.median(ratios):.4f}, scatter {np.std(ratios):.4f} "
              f"({len(ratios)} stars)")
    assert n_true >= 150
    assert found / n_true >= 0.95
    assert spurious / n_bright <= 0.02
    assert len(ratios) >= 100 and abs(np.median(ratios) - 1.0) < 0.01


def test_noise_only_image_has_no_bright_detections():
    rng = np.random.default_rng(6)
    image = rate_image(np.zeros((SIZE, SIZE)), rng, "WFI05", POINTING, SIZE)
    cat = source_catalog(image)
    assert np.sum(np.asarray(cat["snr"]) > 20.0) == 0


def test_positions_and_fluxes_of_bright_stars():
    rng = np.random.default_rng(7)
    x, y = _grid_positions(rng, spacing=30)
    flux = flux_for_snr(np.full(x.size, 300.0), "WFI07")
    data = render((SIZE, SIZE), x, y, flux, "WFI07")
    cat = source_catalog(rate_image(data, rng, "WFI07", POINTING, SIZE))
    d = np.hypot(cat["x"].value[:, None] - x, cat["y"].value[:, None] - y)
    assert np.all(d.min(axis=0) < 0.1)  # every star found
    real = d.min(axis=1) < 0.1
    # anything else is a faint bump of a bright star's PSF, not a bright false source
    assert np.all(np.asarray(cat["snr"])[~real] < 20.0)
    cat = cat[real]
    i = d[real].argmin(axis=1)
    # position scatter near the expected ~FWHM/(2.35 S/N) ~ 0.003 pixel scale
    assert np.std(cat["x"].value - x[i]) < 0.02 and np.std(cat["y"].value - y[i]) < 0.02
    # the fit measures the total flux of the effective PSF model (not only the light in the fit box)
    ratio = cat["flux"].value / flux[i]
    assert abs(np.median(ratio) - 1.0) < 0.02
    assert cat["x"].unit == "pix" and cat["ra"].unit == "deg" and str(cat["flux"].unit) == "DN / s"


def test_flags_saturated_edge_blended():
    rng = np.random.default_rng(8)
    x = np.array([60.0, 1.2, 150.0, 152.5, 200.0])
    y = np.array([60.0, 120.0, 150.0, 150.5, 40.0])
    flux = flux_for_snr(np.full(x.size, 300.0), "WFI09")
    data = render((SIZE, SIZE), x, y, flux, "WFI09")
    image = rate_image(data, rng, "WFI09", POINTING, SIZE)
    image.dq[59:62, 59:62] |= dqbits.SATURATED | dqbits.DO_NOT_USE  # saturated with no rate left
    image.dq[39:42, 199:202] |= dqbits.SATURATED  # saturated part-way: the rate is kept, the star usable
    cat = source_catalog(image)
    flags = {}
    for k in range(len(x)):
        d = np.hypot(cat["x"].value - x[k], cat["y"].value - y[k])
        flags[k] = int(cat["flags"][d.argmin()]) if d.min() < 1.5 else None
    assert flags[0] & SOURCE_FLAGS["SATURATED"]
    assert flags[1] is not None and flags[1] & SOURCE_FLAGS["EDGE"]
    assert flags[2] & SOURCE_FLAGS["BLENDED"] and flags[3] & SOURCE_FLAGS["BLENDED"]
    assert flags[4] == 0


def test_catalog_parquet_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    data = render((SIZE, SIZE), np.array([100.0]), np.array([80.0]), flux_for_snr(np.array([200.0])), "WFI04")
    cat = source_catalog(rate_image(data, rng, "WFI04", POINTING, SIZE))
    path = write_source_catalog(cat, tmp_path / "r_wfi04_cat.parquet")
    back = read_source_catalog(path)
    assert back.colnames == cat.colnames and back["ra"].unit == "deg" and back.meta["detector"] == "WFI04"
    np.testing.assert_allclose(back["x"].value, cat["x"].value)
    field = pq.read_schema(path).field("flux")
    assert field.metadata[b"unit"] == b"DN / s"
    with pytest.raises(InputFileError):
        read_source_catalog(tmp_path / "missing.parquet")


def test_empty_and_masked_images():
    psf = psf_model("WFI01", "F158")
    blank = np.full((64, 64), SKY)
    empty = detect_point_sources(blank, np.full_like(blank, NOISE), None, psf)
    assert len(empty) == 0 and "flux" in empty.colnames
    dq = np.full((64, 64), dqbits.DO_NOT_USE, np.uint32)
    assert len(detect_point_sources(blank, blank, dq, psf)) == 0
