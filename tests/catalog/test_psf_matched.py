"""PSF-matched aperture fluxes give the colours of galaxies drawn with two different PSFs."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from romanflow.catalog.source_catalog import BandImage, make_catalog
from romanflow.catalog.psf_matched import pixel_psf
from romanflow.catalog.synthetic import random_scene, render, tan_wcs

SHAPE = (400, 400)
SCALE = 0.055
FWHM = {"F106": 0.12, "F184": 0.21}  # arcsec: the broad band's PSF is 1.75 times the narrow one's
COLOUR = {"F106": 1.0, "F184": 1.6}  # flux in each band relative to the scene's (colour -0.51 mag)


@pytest.fixture(scope="module")
def catalog():
    scene = random_scene(SHAPE, 0, 30, flux_range_njy=(2e4, 2e5), min_separation=35.0, galaxy_hlr_arcsec=(0.15, 0.3),
                         seed=11)
    wcs = tan_wcs(SHAPE, SCALE)
    images = []
    for k, band in enumerate(FWHM):
        # one seed: the same galaxy shapes in both bands; the noise drawn here, independent per band
        _, err, model = render(scene, SHAPE, psf_fwhm_arcsec=FWHM[band], pixel_scale_arcsec=SCALE, sky_sigma_njy=1.0,
                               flux_scale=COLOUR[band], seed=20)
        data = (model + np.random.default_rng(30 + k).normal(size=SHAPE) * err).astype(np.float32)
        images.append(BandImage(band, data, err, wcs, 1.0, psf_fwhm_arcsec=FWHM[band]))
    cat = make_catalog(images, psf_photometry=False)
    _, idx = cKDTree(np.column_stack([scene.x, scene.y])).query(
        np.column_stack([np.asarray(cat["x_centroid"], float), np.asarray(cat["y_centroid"], float)]))
    return scene, cat, idx


def test_matched_colours_are_the_galaxies_colours(catalog):
    scene, cat, idx = catalog
    assert cat.meta["psf_matched_to"] == "f184"
    true_colour = -2.5 * np.log10(COLOUR["F106"] / COLOUR["F184"])
    matched = -2.5 * np.log10(np.asarray(cat["aper_matched_f106_flux"]) / np.asarray(cat["aper_matched_f184_flux"]))
    raw = -2.5 * np.log10(np.asarray(cat["aper02_f106_flux"]) / np.asarray(cat["aper02_f184_flux"]))
    assert len(cat) >= 25
    assert abs(np.median(matched) - true_colour) < 0.01, np.median(matched) - true_colour
    # the same aperture without matching: the narrow PSF puts more light in it
    assert np.median(raw) - true_colour < -0.05
    # errors: honest colour scatter given the flux errors
    f1, f2 = (np.asarray(cat[f"aper_matched_{b}_flux"], float) for b in ("f106", "f184"))
    e1, e2 = (np.asarray(cat[f"aper_matched_{b}_flux_err"], float) for b in ("f106", "f184"))
    z = (f1 / f2 - COLOUR["F106"] / COLOUR["F184"]) / (f1 / f2 * np.hypot(e1 / f1, e2 / f2))
    assert 0.6 < np.std(z) < 1.5, np.std(z)


def test_pixel_psf_is_centred_and_normalised():
    from romanflow.catalog.photometry import gaussian_psf

    image = pixel_psf(gaussian_psf(3.0), half=10)
    assert image.shape == (21, 21) and image.sum() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(image), image.shape) == (10, 10)
