"""Injection into L2 exposures and L3 mosaics: flux, noise, DQ, footprints, originals, bad input."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from romanflow import dq as dqbits
from romanflow.errors import InputFileError
from romanflow.formats import open_model, read_l2
from romanflow.inject import generate_sources, inject_images, injected_name, read_injection_catalog
from romanflow.inject.tables import read_provenance
from romanflow.kernels.injection import variance_per_flux

from .conftest import FWHM_ARCSEC, SIZE


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def catalog_on(image_path, n=12, star_fraction=0.5, seed=0, mag_range=(21.0, 23.0)):
    image = read_l2(image_path)
    return generate_sources(image.wcs, image.data.shape, ["F158"], n=n, mag_range=mag_range,
                            star_fraction=star_fraction, seed=seed, min_separation_arcsec=4.0)


def test_injected_flux_is_what_was_asked_l2(field, tmp_path):
    sources = catalog_on(field.l2[0], n=8, star_fraction=0.5, seed=3)
    sources.loc[sources["type"] != "star", "sersic_n"] = 1.0
    assert set(sources["type"]) == {"star", "sersic"}
    before = sha256(field.l2[0])
    [result] = inject_images([field.l2[0]], sources, tmp_path, noise=False, psf_fwhm_arcsec=FWHM_ARCSEC)
    assert sha256(field.l2[0]) == before
    original, injected = read_l2(field.l2[0]), read_l2(result.path)
    added = injected.data.astype(np.float64) - original.data
    table = result.sources
    assert len(table) == len(sources)
    from romanflow.catalog.products import read_band_image

    njy = read_band_image(field.l2[0], psf_fwhm_arcsec=FWHM_ARCSEC).njy_per_pixel
    np.testing.assert_allclose(table["flux_image"] * njy, 10 ** (-0.4 * (table["mag"] - 31.4)), rtol=1e-10)
    x0, y0, size = (table[c].to_numpy() for c in ("stamp_x0", "stamp_y0", "stamp_size"))
    overlaps = ((np.abs(np.subtract.outer(x0 + size / 2, x0 + size / 2)) < np.add.outer(size, size) / 2)
                & (np.abs(np.subtract.outer(y0 + size / 2, y0 + size / 2)) < np.add.outer(size, size) / 2))
    alone = overlaps.sum(axis=1) == 1
    assert set(table["type"][alone]) == {"star", "sersic"}
    for row in table[alone].itertuples():
        box = added[row.stamp_y0:row.stamp_y0 + row.stamp_size, row.stamp_x0:row.stamp_x0 + row.stamp_size]
        # the sum over the stamp is the flux added (float32 storage of the image: 1e-5)
        assert box.sum() == pytest.approx(row.stamp_flux_image, rel=2e-4, abs=2e-3)
        # and the flux asked for: all of a star's Gaussian, all but the far wings of an exponential disc
        assert row.stamp_flux_image == pytest.approx(row.flux_image, rel=1e-4 if row.type == "star" else 5e-3)
    assert added.sum() == pytest.approx(table["stamp_flux_image"].sum(), rel=1e-4)
    # footprints: INJECTED where the stamps are, nowhere else; the other bits unchanged
    footprint = (injected.dq & dqbits.INJECTED) != 0
    np.testing.assert_array_equal(injected.dq & ~np.uint32(dqbits.INJECTED), original.dq)
    assert footprint.any() and np.all(added[~footprint] == 0)
    assert injected.meta["injection"]["parent"] == field.l2[0].name
    assert read_provenance(result.sources_path)["parent"] == field.l2[0].name
    stored = pd.read_parquet(result.sources_path)
    np.testing.assert_array_equal(stored["injection_id"], table["injection_id"])


def test_poisson_noise_only_where_flux_was_and_variances_grow(field, tmp_path):
    sources = catalog_on(field.l2[0], star_fraction=1.0, mag_range=(19.0, 20.0))
    [clean] = inject_images([field.l2[0]], sources, tmp_path / "clean", noise=False, psf_fwhm_arcsec=FWHM_ARCSEC)
    [noisy] = inject_images([field.l2[0]], sources, tmp_path / "noisy", noise=True, seed=4,
                            psf_fwhm_arcsec=FWHM_ARCSEC)
    original, a, b = read_l2(field.l2[0]), read_l2(clean.path), read_l2(noisy.path)
    added = a.data.astype(np.float64) - original.data
    noise = b.data.astype(np.float64) - a.data
    assert np.all(noise[added == 0] == 0)  # noise only where flux was
    # the variance added is the parent's variance per flux times the flux; the synthetic image's var_poisson
    # follows its noiseless signal, so the factor is the median ratio, 1 / exposure time
    k = variance_per_flux(original.data, original.var_poisson)
    assert np.ptp(k) == 0 and k[0, 0] == pytest.approx(1 / 139.8, rel=0.02)
    expected_var = added * k
    quantum = 1e-3 * b.var_poisson.astype(np.float64) + 1e-6  # float16 storage of the variances
    off = np.abs(b.var_poisson - original.var_poisson.astype(np.float64) - expected_var) / quantum
    assert off.max() <= 1.0, off.max()
    err2 = b.err.astype(np.float64) ** 2 - original.err.astype(np.float64) ** 2
    off = np.abs(err2 - expected_var) / (2 * quantum + 1e-3 * original.err.astype(np.float64) ** 2)
    assert off.max() <= 1.0, off.max()
    bright = added > 2.0
    z = noise[bright] / np.sqrt(expected_var[bright])
    assert bright.sum() > 100
    assert abs(np.mean(z)) < 0.15 and 0.85 < np.std(z) < 1.15


def test_injection_into_a_mosaic(field, tmp_path):
    with open_model(field.l3, "MosaicModel") as m:
        wcs, shape = m.meta.wcs, m.data.shape
        original = np.array(m.data, np.float64)
    sources = generate_sources(wcs, shape, ["F158"], n=9, mag_range=(21.0, 22.0), layout="grid", star_fraction=1.0,
                               margin_pix=40)
    before = sha256(field.l3)
    [result] = inject_images([field.l3], sources, tmp_path, noise=False, psf_fwhm_arcsec=FWHM_ARCSEC)
    assert result.level == "L3" and result.path.name == injected_name(field.l3)
    assert sha256(field.l3) == before
    with open_model(result.path, "MosaicModel") as m:
        added = np.array(m.data, np.float64) - original
        assert m.meta.injection["level"] == "L3"
        members = [str(v) for v in m.meta.resample.members]
    assert added.sum() == pytest.approx(result.sources["stamp_flux_image"].sum(), rel=1e-4)
    assert result.sources["stamp_flux_image"].to_numpy() == pytest.approx(result.sources["flux_image"].to_numpy(),
                                                                           rel=1e-4)
    # the members still lead to the parent's exposures from the new folder
    assert all((result.path.parent / m).resolve().is_file() for m in members)


def test_bad_input_gives_one_error_and_no_product(field, tmp_path):
    good = catalog_on(field.l2[0])
    out = tmp_path / "out"

    path = tmp_path / "no_mag.parquet"
    good[["ra", "dec", "type"]].to_parquet(path)
    with pytest.raises(InputFileError, match="no magnitude column"):
        read_injection_catalog(path)
    path = tmp_path / "no_dec.parquet"
    good.drop(columns=["dec"]).to_parquet(path)
    with pytest.raises(InputFileError, match="no 'dec' column"):
        read_injection_catalog(path)

    path = tmp_path / "other_band.parquet"
    good.rename(columns={"mag_F158": "mag_F106"}).to_parquet(path)
    with pytest.raises(InputFileError, match=r"no mag_F158 column .*band F158") as info:
        inject_images([field.l2[0]], read_injection_catalog(path), out, catalog_name=str(path),
                      psf_fwhm_arcsec=FWHM_ARCSEC)
    assert str(path) in str(info.value) and "\n" not in str(info.value)

    far = good.copy()
    far["dec"] = far["dec"] - 5.0
    with pytest.raises(InputFileError, match="no source falls on any"):
        inject_images(field.l2, far, out, catalog_name="far.parquet", psf_fwhm_arcsec=FWHM_ARCSEC)
    assert not out.exists() or not any(out.iterdir())


def test_generated_sources_avoid_real_ones(field):
    image = read_l2(field.l2[0])
    ra, dec, _ = field.real
    sources = generate_sources(image.wcs, image.data.shape, ["F158"], n=60, avoid=(ra, dec),
                               avoid_radius_arcsec=2.0, seed=2)
    assert len(sources) == 60
    x, y = image.wcs.world_to_pixel_values(sources["ra"].to_numpy(), sources["dec"].to_numpy())
    rx, ry = image.wcs.world_to_pixel_values(ra, dec)
    d = np.hypot(np.subtract.outer(x, rx), np.subtract.outer(y, ry)).min(axis=1) * 0.11
    assert d.min() > 2.0
    assert (x > 20).all() and (x < SIZE - 21).all()
    grid = generate_sources(image.wcs, image.data.shape, ["F158", "F106"], n=16, layout="grid", seed=2)
    assert len(grid) == 16 and (grid["mag_F158"] == grid["mag_F106"]).all()


def test_variance_per_flux_is_exact_for_a_fitted_image():
    rng = np.random.default_rng(1)
    factor = rng.uniform(0.9, 1.1, (50, 50)) / 140.0  # gain and flat vary from pixel to pixel
    data = rng.normal(1.0, 0.1, (50, 50))
    var = np.clip(data, 0, None) * factor  # a ramp fit's Poisson variance follows its own (noisy) slope
    k = variance_per_flux(data, var)
    np.testing.assert_allclose(k[data > 0], factor[data > 0], rtol=1e-12)
    assert np.all(k[data <= 0] == np.median(factor[data > 0]))
