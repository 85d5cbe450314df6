"""Injection against the simulator's truth: one simulated and calibrated detector.

The completeness measured by injecting stars agrees with the completeness of the
simulated stars themselves (50% magnitudes within 0.1 mag), and injected isolated
stars come back with unbiased fluxes and honest errors.
"""

import numpy as np
import pandas as pd
import pytest

from romanflow import geometry

SIZE = 504
DETECTOR = "WFI01"
POINTING = geometry.pointing_for(270.0, 66.0, 30.0)


@pytest.fixture(scope="module", params=["F158", "F106"])
def survey(request, tmp_path_factory):
    from romanflow.calibrate.pipeline import calibrate_file
    from romanflow.inject.recover import catalog_images
    from romanflow.simulate import simulate
    from romanflow.simulate.scene import Scene

    band = request.param
    out = tmp_path_factory.mktemp("truth")
    proj = geometry.DetectorProjection(DETECTOR, POINTING, SIZE)
    rng = np.random.default_rng(1)
    n = 900
    x, y = rng.uniform(-5, SIZE + 5, n), rng.uniform(-5, SIZE + 5, n)
    ra, dec = proj.pixel_to_world(x, y)
    truth = pd.DataFrame({
        "source_id": np.arange(n), "type": "star", "ra": ra, "dec": dec, "epoch": 2016.0, "pmra": 0.0,
        "pmdec": 0.0, "parallax": 0.0, f"mag_{band}": rng.uniform(23.5, 27.5, n), "half_light_radius": 0.0,
        "sersic_n": 1.0, "axis_ratio": 1.0, "position_angle": 0.0, "bulge_fraction": 0.0,
        "bulge_half_light_radius": 0.0,
    })
    sim = simulate(Scene(truth), detectors=[DETECTOR], optical_element=band, pointing=POINTING,
                   science_size=SIZE, seed=3, output_dir=out / "sim")
    l2, _ = calibrate_file(sim["l1"][0], out / "l2")
    parent, images = catalog_images([l2])
    return l2, truth, parent, images[0], out, band


@pytest.fixture(scope="module")
def injected(survey):
    from romanflow.formats import read_l2
    from romanflow.inject import generate_sources, inject_images
    from romanflow.inject.recover import recover

    l2, truth, parent, _, out, band = survey
    image = read_l2(l2)
    outputs = []
    for k in range(2):
        # faint stars anywhere, as the simulated ones are; bright stars away from everything
        faint = generate_sources(image.wcs, image.data.shape, [band], n=350, mag_range=(23.5, 26.0),
                                 star_fraction=1.0, margin_pix=20, seed=k, first_id=10_000 * k)
        avoid = (np.concatenate([np.asarray(parent["ra"]), faint["ra"]]),
                 np.concatenate([np.asarray(parent["dec"]), faint["dec"]]))
        bright = generate_sources(image.wcs, image.data.shape, [band], n=60, mag_range=(19.5, 22.5),
                                  star_fraction=1.0, margin_pix=20, seed=100 + k, avoid=avoid,
                                  avoid_radius_arcsec=1.5, min_separation_arcsec=3.0, first_id=10_000 * k + 5000)
        [result] = inject_images([l2], pd.concat([faint, bright], ignore_index=True), out / f"inj{k}", seed=k)
        outputs.append(recover([result.path], [result.sources], parent_catalog=parent).output)
    return pd.concat(outputs, ignore_index=True)


def test_injection_completeness_agrees_with_the_truth(survey, injected):
    from romanflow.inject.metrics import fit_completeness
    from romanflow.kernels.matching import match_sources

    l2, truth, parent, image, _, band = survey
    tx, ty = (np.asarray(v) for v in image.wcs.world_to_pixel_values(truth["ra"].to_numpy(), truth["dec"].to_numpy()))
    inside = (tx > 20) & (ty > 20) & (tx < SIZE - 21) & (ty < SIZE - 21)
    flux = np.asarray(parent[f"psf_{band.lower()}_flux"])
    det_mag = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1.0)) + 31.4, np.nan)
    fwhm_pix = parent.meta["psf_fwhm_arcsec"][band.lower()] / 0.11
    index, _, _ = match_sources(tx[inside], ty[inside], truth[f"mag_{band}"].to_numpy()[inside],
                                np.asarray(parent["x_centroid"]), np.asarray(parent["y_centroid"]), det_mag,
                                radius=max(1.5 * fwhm_pix, 0.15 / 0.11))
    from_truth = fit_completeness(truth[f"mag_{band}"].to_numpy()[inside], index >= 0)
    faint = injected[injected["mag_in"] > 23.0]
    from_injection = fit_completeness(faint["mag_in"], faint["matched"])
    assert from_truth["n"] > 500 and from_injection["n"] == 700
    assert 24.0 < from_truth["mag50"] < 26.0
    assert abs(from_injection["mag50"] - from_truth["mag50"]) < 0.1, (from_injection, from_truth)


def test_isolated_bright_stars_come_back_unbiased_with_honest_errors(injected):
    bright = injected[(injected["mag_in"] < 23.0) & ((injected["recovery_flags"] & 3) == 0)]
    # a few land on the detector's defects (masked pixels) and are lost: part of what injection measures
    assert bright["matched"].mean() > 0.95
    snr = bright["flux_out"] / bright["flux_out_err"]
    b = bright[bright["matched"] & (snr > 50)]
    assert len(b) > 80
    bias = np.median(b["flux_out"] / b["flux_in"]) - 1
    z = (b["flux_out"] - b["flux_in"]) / b["flux_out_err"]
    assert abs(bias) < 0.005, bias
    assert 0.9 <= np.std(z) <= 1.2, np.std(z)
