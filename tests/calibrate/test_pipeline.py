"""L1 -> L2 against the simulator's truth, at small size, for both ramp-fitting methods."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from romanflow import dq, geometry
from romanflow.calibrate import CalibrationOptions, calibrate_exposure, resolve_references
from romanflow.detector import N_BORDER, SMALL_SCIENCE_SIZE
from romanflow.detector_model import DetectorModel
from romanflow.refdata import ReferenceStore
from romanflow.simulate import random_scene, simulate_detector
from romanflow.validation import jump_completeness

SIZE = SMALL_SCIENCE_SIZE
S = slice(N_BORDER, -N_BORDER)

#: A sparse field (most pixels at the sky level, 0.1-1 DN/s) and a crowded one (1-5000 DN/s):
#: (sources, faint limit AB, seed).
FIELDS = {"sparse": (1500, 21.0, 3), "crowded": (3000, 20.0, 4)}

#: Which field measures which flux decade (DN/s).
DECADES = {(0.1, 1.0): "sparse", (1.0, 10.0): "crowded", (10.0, 100.0): "crowded", (100.0, 1e4): "crowded"}


def _simulate(n_sources, faint_limit, seed):
    """A star-rich field centred on a small WFI01."""
    pointing = geometry.pointing_for(270.0, 66.0, 0.0)
    centre = (SIZE - 1) / 2.0
    ra, dec = geometry.DetectorProjection("WFI01", pointing, SIZE).pixel_to_world(np.array([centre]),
                                                                                  np.array([centre]))
    scene = random_scene(float(ra[0]), float(dec[0]), 0.006, n_sources=n_sources, faint_limit=faint_limit,
                         star_fraction=0.8, seed=seed)
    return simulate_detector(scene, "WFI01", "F158", ma_table_number=4, pointing=pointing,
                             science_size=SIZE, seed=seed)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ReferenceStore(tmp_path_factory.mktemp("refs"), science_size=SIZE)


@pytest.fixture(scope="module")
def simulations():
    return {name: _simulate(*params) for name, params in FIELDS.items()}


@pytest.fixture(scope="module", params=["likely", "casertano"])
def calibrated(request, simulations, store):
    """method -> {field: (image, simulation)}"""
    out = {}
    for field, sim in simulations.items():
        exposure = copy.deepcopy(sim.exposure)
        options = CalibrationOptions(ramp_method=request.param, context=store)
        image, _ = calibrate_exposure(exposure, options, resolve_references(exposure.meta, SIZE, options))
        out[field] = (image, sim)
    return request.param, out


def _usable(image):
    return ((image.dq & dq.DO_NOT_USE) == 0) & np.isfinite(image.data)


@pytest.mark.parametrize("field", list(FIELDS))
def test_rate_bias_below_a_tenth_of_a_percent(calibrated, field):
    method, results = calibrated
    image, sim = results[field]
    truth = sim.rate_dn
    bright = _usable(image) & (truth > 1.0)
    assert bright.sum() > 10000
    bias = np.median((image.data[bright] - truth[bright]) / truth[bright])
    assert abs(bias) < 1e-3, f"{method}/{field}: median relative bias {bias:.2e}"


@pytest.mark.parametrize("decade", list(DECADES))
def test_errors_are_honest_in_each_flux_decade(calibrated, decade):
    from astropy.stats import sigma_clipped_stats

    method, results = calibrated
    image, sim = results[DECADES[decade]]
    truth = sim.rate_dn
    lo, hi = decade
    clean = _usable(image) & ((image.dq & dq.JUMP_DET) == 0) & (truth > lo) & (truth <= hi)
    assert clean.sum() > 1000
    z = (image.data[clean] - truth[clean]) / image.err[clean].astype(np.float64)
    _, _, width = sigma_clipped_stats(z, sigma=5.0)  # a rare missed hit does not decide
    assert abs(width - 1.0) < 0.05, f"{method} {decade}: std of normalised residuals {width:.3f}"


@pytest.mark.parametrize("field", list(FIELDS))
def test_cosmic_rays_are_flagged_and_clean_pixels_are_not(calibrated, field):
    method, results = calibrated
    image, sim = results[field]
    model = DetectorModel("WFI01", SIZE)
    found = jump_completeness(image.dq, sim.cosmic_rays, sim.rate_dn + model.dark_rate[S, S], model.gain[S, S],
                              model.read_noise[S, S], sim.exposure.read_pattern)
    assert found["hits"] > 20
    assert found["completeness"] >= 0.98, f"{method}/{field}: completeness {found['completeness']:.3f}"
    assert found["false_rate"] < 1e-3, f"{method}/{field}: false jump rate {found['false_rate']:.2e}"


def test_saturated_pixels_recover_their_rate(calibrated):
    """Pixels that saturate during the ramp keep a rate from their unsaturated resultants."""
    method, results = calibrated
    image, sim = results["crowded"]
    model = DetectorModel("WFI01", SIZE)
    truth = sim.rate_dn
    raw_rate = truth * model.flat_dn("F158")[S, S]  # DN/s as the pixel measures it
    headroom = 0.97 * model.full_well[S, S] - model.bias[S, S]  # linear DN until the saturation level
    times = sim.exposure.read_pattern.mean_times
    saturates_late = (raw_rate * times[-1] > headroom) & (raw_rate * times[2] < headroom)
    late = _usable(image) & saturates_late
    assert late.sum() > 20
    z = (image.data[late] - truth[late]) / image.err[late]
    assert abs(np.median(z)) < 0.3 and np.std(z) < 1.3, f"{method}: median z {np.median(z):.2f}, std {np.std(z):.2f}"
    # a pixel that saturated part-way keeps its rate and says that it saturated
    assert np.mean((image.dq[late] & dq.SATURATED) != 0) > 0.95


def test_product_records_steps_and_references(calibrated):
    method, results = calibrated
    image, _ = results["sparse"]
    cal_step = image.meta["cal_step"]
    for step in ("dq_init", "saturation", "refpix", "linearity", "ramp_fit", "dark", "assign_wcs",
                 "flat_field", "photom"):
        assert cal_step[step] == "COMPLETE"
    assert image.meta["ref_file"]["dark"].endswith(".asdf")
    photometry = image.meta["photometry"]
    assert photometry["conversion_megajanskys"] > 0
    assert photometry["conversion_microjanskys"] == pytest.approx(23.5045 * photometry["conversion_megajanskys"])
    assert photometry["gain"] == pytest.approx(DetectorModel("WFI01", SIZE).nominal_gain, rel=1e-4)
    assert image.wcs is not None


def test_residual_correlated_noise_enters_the_read_noise_only_after_refpix(calibrated, simulations, store):
    """refpix measures the correlated noise it leaves; ramp fitting adds it to the read-noise variance."""
    method, results = calibrated
    image, _ = results["sparse"]
    logs = image.meta["cal_logs"]
    refpix_line = next(line for line in logs if line.startswith("refpix: residual"))
    residual = float(refpix_line.split("noise ")[1].split(" DN")[0])
    assert 0.5 < residual < 20.0                    # DN² per read; white read noise is ~25 DN²
    exposure = copy.deepcopy(simulations["sparse"].exposure)
    options = CalibrationOptions(ramp_method=method, context=store, skip=("refpix",))
    plain, _ = calibrate_exposure(exposure, options, resolve_references(exposure.meta, SIZE, options))
    assert not any(line.startswith("refpix: residual") for line in plain.meta["cal_logs"])
    sky = _usable(image) & _usable(plain)
    ratio = np.median(image.var_rnoise[sky] / plain.var_rnoise[sky])
    model = DetectorModel("WFI01", SIZE)
    expected = np.median(1.0 + residual / model.read_noise[S, S].astype(np.float64) ** 2)
    if method == "casertano":
        assert ratio == pytest.approx(expected, rel=0.05)
    else:
        # the likelihood fit re-optimises its weights for the larger read noise, so the
        # read-noise variance of its rate grows by less than the read noise itself
        assert 1.0 + 0.5 * (expected - 1.0) < ratio <= expected * 1.02


# --- a user's bad input is reported by the wrappers, before any kernel sees it -------------------
def _small_exposure(n_planes=9, filename="r0000101001001001001_0001_wfi01_uncal.asdf"):
    """A tiny L1-like ramp (MA table 4 pattern) whose data has ``n_planes`` resultants."""
    from romanflow.detector import FRAME_TIME, ma_table
    from romanflow.exposure import RampExposure

    meta = {"filename": filename,
            "exposure": {"read_pattern": ma_table(4).as_list(), "frame_time": FRAME_TIME}}
    data = np.full((n_planes, 136, 128), 100.0, np.float32)
    return RampExposure(data=data, amp33=np.zeros((n_planes, 136, 128), np.float32), meta=meta,
                        groupdq=np.zeros(data.shape, np.uint8), pixeldq=np.zeros(data.shape[1:], np.uint32))


def test_options_reject_an_unknown_ramp_method():
    from romanflow.errors import ParameterError

    with pytest.raises(ParameterError, match="ramp_method='ols'"):
        CalibrationOptions(ramp_method="ols")
    with pytest.raises(ParameterError, match="skip"):
        CalibrationOptions(skip=("ramp_fit",))


def test_steps_name_the_file_whose_resultants_disagree_with_its_read_pattern():
    from romanflow.calibrate.ramp_fit import ramp_fit
    from romanflow.calibrate.saturation import saturation
    from romanflow.errors import InputFileError, ParameterError

    short = _small_exposure(n_planes=7)
    frame = short.data.shape[1:]
    for step in (lambda e: saturation(e, np.full(frame, 6e4, np.float32)),
                 lambda e: ramp_fit(e, np.full(frame, 5.0, np.float32), np.full(frame, 2.0, np.float32))):
        with pytest.raises(InputFileError, match=r"wfi01_uncal.asdf: data has 7 resultants .* describes 9"):
            step(short)
    with pytest.raises(InputFileError, match="read pattern"):
        calibrate_exposure(_small_exposure(n_planes=7), CalibrationOptions(), references={})
    bad_flags = _small_exposure()
    bad_flags.groupdq = bad_flags.groupdq[:, :-1]
    with pytest.raises(InputFileError, match="resultant flags have shape"):
        saturation(bad_flags, np.full(frame, 6e4, np.float32))
    with pytest.raises(ParameterError, match="method='ols'"):
        ramp_fit(_small_exposure(), np.full(frame, 5.0, np.float32), np.full(frame, 2.0, np.float32), method="ols")


def test_a_reference_of_another_size_is_reported_with_its_path(tmp_path):
    from romanflow.calibrate.inputs import check_reference_frame
    from romanflow.errors import InputFileError
    from romanflow.formats.reference_io import ReferenceData

    gain = ReferenceData("gain", tmp_path / "gain.asdf", {}, {"data": np.ones((264, 264), np.float32)})
    with pytest.raises(InputFileError, match=r"gain.asdf: gain arrays are 264x264 pixels; .* 136x136"):
        check_reference_frame(gain, (136, 136))
    check_reference_frame(gain, (264, 264))
    flat = ReferenceData("flat", tmp_path / "flat.asdf", {}, {"data": np.ones((128, 128), np.float32)})
    check_reference_frame(flat, (136, 136))            # darks and flats may come trimmed


def test_dark_decay_is_injected_and_removed(calibrated, simulations, store):
    """The simulator adds the decay after reset to every pixel; without its step the sky-level rates come
    out low by the decay's slope, with it they are unbiased."""
    method, results = calibrated
    image, sim = results["sparse"]
    exposure = copy.deepcopy(simulations["sparse"].exposure)
    options = CalibrationOptions(ramp_method=method, context=store, skip=("dark_decay",))
    plain, _ = calibrate_exposure(exposure, options, resolve_references(exposure.meta, SIZE, options))
    assert image.meta["cal_step"]["dark_decay"] == "COMPLETE"
    assert image.meta["ref_file"]["darkdecaysignal"].endswith(".asdf")
    truth = sim.rate_dn
    sky = _usable(image) & _usable(plain) & ((image.dq & dq.JUMP_DET) == 0) & (truth < 2.0)
    assert sky.sum() > 5000

    def bias(img):
        z = (img.data[sky] - truth[sky]) / img.err[sky]
        return float(np.mean((img.data[sky] - truth[sky])[np.abs(z) < 5]))

    assert bias(plain) < -1e-3, f"{method}: sky bias without dark_decay {bias(plain):+.1e} DN/s"
    assert abs(bias(image)) < 4e-4, f"{method}: sky bias with dark_decay {bias(image):+.1e} DN/s"
