"""Detection and photometry on synthetic images with known truth."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from romanflow.catalog.schema import catalog_columns, validate_table
from romanflow.catalog.source_catalog import BandImage, forced_photometry, make_catalog
from romanflow.catalog.synthetic import point_source_snr, random_scene, render, tan_wcs

SHAPE = (512, 512)
SCALE = 0.055
FWHM = 0.15
SKY = 1.0
# MJy/sr -> nJy per pixel, as for an L3 mosaic
NJY_PER_PIXEL = 1e15 * (SCALE / 206264.806) ** 2


def _band_image(band, image, err, wcs, **kw):
    return BandImage(band, image / NJY_PER_PIXEL, err / NJY_PER_PIXEL, wcs, NJY_PER_PIXEL, **kw)


def _match(cat, scene, radius=2.0):
    tree = cKDTree(np.column_stack([np.asarray(cat["x_centroid"]), np.asarray(cat["y_centroid"])]))
    dist, idx = tree.query(np.column_stack([scene.x, scene.y]))
    return dist < radius, idx


@pytest.fixture(scope="module")
def single_band():
    scene = random_scene(SHAPE, 110, 8, flux_range_njy=(15.0, 4000.0), min_separation=18.0, seed=21)
    image, err, _ = render(scene, SHAPE, psf_fwhm_arcsec=FWHM, sky_sigma_njy=SKY, background_njy=4.0, seed=22)
    wcs = tan_wcs(SHAPE, SCALE, rotation_deg=20.0)
    cat = make_catalog(_band_image("F158", image, err, wcs, psf_fwhm_arcsec=FWHM))
    return scene, wcs, image, err, cat


def test_schema_and_sky_positions(single_band):
    scene, wcs, _, _, cat = single_band
    validate_table(cat, catalog_columns("skycell", ["f158"]))
    found, idx = _match(cat, scene)
    stars = found & ~scene.is_galaxy & (point_source_snr(scene.flux, FWHM, SCALE, SKY) > 50)
    ra_true, dec_true = wcs.pixel_to_world_values(scene.x[stars], scene.y[stars])
    dra = (np.asarray(cat["ra"])[idx[stars]] - ra_true) * np.cos(np.deg2rad(dec_true)) * 3600
    ddec = (np.asarray(cat["dec"])[idx[stars]] - dec_true) * 3600
    assert np.max(np.hypot(dra, ddec)) < 0.01  # arcsec; PSF fit positions of bright stars


def test_point_source_completeness_at_snr_10(single_band):
    scene, _, _, _, cat = single_band
    found, _ = _match(cat, scene)
    snr = point_source_snr(scene.flux, FWHM, SCALE, SKY)
    stars = ~scene.is_galaxy & (snr >= 10)
    assert stars.sum() > 50
    assert found[stars].mean() >= 0.9
    # and no gross over-detection: at most a handful of spurious sources
    assert len(cat) <= len(scene.x) + 5


def test_psf_and_aperture_photometry_unbiased_with_honest_errors(single_band):
    scene, _, _, _, cat = single_band
    found, idx = _match(cat, scene)
    snr = point_source_snr(scene.flux, FWHM, SCALE, SKY)
    stars = found & ~scene.is_galaxy
    bright = stars & (snr > 50)
    assert bright.sum() >= 15
    psf = np.asarray(cat["psf_f158_flux"].value, float)[idx]
    psf_err = np.asarray(cat["psf_f158_flux_err"].value, float)[idx]
    assert abs(np.median(psf[bright] / scene.flux[bright]) - 1) < 0.01
    pull = (psf[stars] - scene.flux[stars]) / psf_err[stars]
    assert abs(np.std(pull) - 1.0) < 0.15

    # 0.4" aperture: the PSF's encircled fraction of the truth, with honest errors
    sigma = FWHM / 2.3548
    fraction = 1 - np.exp(-(0.4**2) / (2 * sigma**2))
    aper = np.asarray(cat["aper04_f158_flux"].value, float)[idx]
    aper_err = np.asarray(cat["aper04_f158_flux_err"].value, float)[idx]
    assert abs(np.median(aper[bright] / (fraction * scene.flux[bright])) - 1) < 0.01
    pull = (aper[stars] - fraction * scene.flux[stars]) / aper_err[stars]
    assert abs(np.std(pull) - 1.0) < 0.15


def test_galaxies_are_extended_and_stars_are_not(single_band):
    scene, _, _, _, cat = single_band
    found, idx = _match(cat, scene)
    ext = np.asarray(cat["is_extended_f158"])[idx]
    snr = point_source_snr(scene.flux, FWHM, SCALE, SKY)
    bright_gal = found & scene.is_galaxy & (snr > 100)
    bright_star = found & ~scene.is_galaxy & (snr > 30)
    assert bright_gal.sum() >= 3 and ext[bright_gal].all()
    assert ext[bright_star].mean() < 0.05
    # Kron flux holds most of a galaxy's light; its magnitude follows the AB definition
    kron = np.asarray(cat["kron_f158_flux"].value)[idx[bright_gal]]
    assert np.all((kron / scene.flux[bright_gal] > 0.85) & (kron / scene.flux[bright_gal] < 1.05))
    mag = np.asarray(cat["kron_f158_abmag"].value)[idx[bright_gal]]
    assert np.allclose(mag, -2.5 * np.log10(kron) + 31.4, atol=1e-4)


def test_psf_fwhm_estimated_from_the_image(single_band):
    scene, wcs, image, err, _ = single_band
    cat = make_catalog(_band_image("F158", image, err, wcs), psf_photometry=False)
    assert cat.meta["psf_fwhm_arcsec"]["f158"] == pytest.approx(FWHM, rel=0.05)


def test_multiband_colours_match_truth():
    scene = random_scene(SHAPE, 60, 0, flux_range_njy=(300.0, 4000.0), min_separation=18.0, seed=31)
    rng = np.random.default_rng(32)
    colour = rng.uniform(0.5, 2.0, len(scene.x))  # flux ratio f184 / f158, per star
    wcs = tan_wcs(SHAPE, SCALE)
    im1, e1, _ = render(scene, SHAPE, psf_fwhm_arcsec=FWHM, sky_sigma_njy=SKY, seed=33)
    scene2 = type(scene)(scene.x, scene.y, scene.flux * colour, scene.is_galaxy, scene.half_light_radius)
    im2, e2, _ = render(scene2, SHAPE, psf_fwhm_arcsec=0.17, sky_sigma_njy=1.5 * SKY, seed=34)
    cat = make_catalog([
        _band_image("F158", im1, e1, wcs, psf_fwhm_arcsec=FWHM),
        _band_image("F184", im2, e2, wcs, psf_fwhm_arcsec=0.17),
    ])
    validate_table(cat, catalog_columns("multiband", ["f158", "f184"]))
    found, idx = _match(cat, scene)
    assert found.mean() > 0.95
    f1 = np.asarray(cat["psf_f158_flux"].value, float)[idx[found]]
    f2 = np.asarray(cat["psf_f184_flux"].value, float)[idx[found]]
    e1_, e2_ = (np.asarray(cat[c].value, float)[idx[found]] for c in ("psf_f158_flux_err", "psf_f184_flux_err"))
    measured = -2.5 * np.log10(f2 / f1)
    truth = -2.5 * np.log10(colour[found])
    colour_err = 2.5 / np.log(10) * np.hypot(e1_ / f1, e2_ / f2)
    assert abs(np.median(measured - truth)) < 0.01
    assert abs(np.std((measured - truth) / colour_err) - 1) < 0.2


def test_forced_photometry_recovers_injected_fluxes(single_band):
    scene, wcs, image, err, _ = single_band
    stars = ~scene.is_galaxy
    ra, dec = wcs.pixel_to_world_values(scene.x[stars], scene.y[stars])
    # a second epoch: the same stars, fluxes changed by a known factor, fresh noise
    factor = np.random.default_rng(41).uniform(0.5, 1.5, stars.sum())
    epoch = type(scene)(scene.x[stars], scene.y[stars], scene.flux[stars] * factor, scene.is_galaxy[stars],
                        scene.half_light_radius[stars])
    im2, e2, _ = render(epoch, SHAPE, psf_fwhm_arcsec=FWHM, sky_sigma_njy=SKY, seed=42)
    table = forced_photometry(_band_image("F158", im2, e2, wcs, psf_fwhm_arcsec=FWHM), ra, dec,
                              ids=np.arange(100, 100 + stars.sum()))
    validate_table(table, catalog_columns("forced", ["f158"]))
    assert np.array_equal(table["id"], np.arange(100, 100 + stars.sum()))
    assert np.allclose(table["x"].value, epoch.x, atol=1e-3)
    flux = np.asarray(table["psf_f158_flux"].value, float)
    pull = (flux - epoch.flux) / np.asarray(table["psf_f158_flux_err"].value, float)
    assert abs(np.mean(pull)) < 0.3 and abs(np.std(pull) - 1) < 0.15
    bright = point_source_snr(epoch.flux, FWHM, SCALE, SKY) > 50
    assert abs(np.median(flux[bright] / epoch.flux[bright]) - 1) < 0.01
