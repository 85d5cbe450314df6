"""The PSF API's conventions, the library against direct galsim evaluation, the epsf file, bad input."""

import numpy as np
import pytest

from romanflow.errors import RomanflowError
from romanflow.psf import MODEL_OVERSAMPLE, psf_image, psf_model, read_library, upsample_epsf, write_library
from romanflow.psf.library import build_library
from romanflow.psf.optics import broadband_image

DET, BAND = "WFI07", "F158"


def _centroid(image):
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    return (image * xx).sum() / image.sum(), (image * yy).sum() / image.sum()


def test_centre_normalisation_and_sampling_for_odd_and_even_sizes():
    native = psf_image(DET, BAND, 1500.0, 700.0, size=25)
    fine = psf_image(DET, BAND, 1500.0, 700.0, oversample=4, size=97)
    # every 4th sample of the oversampled image is the native one (same centre at (n-1)/2)
    assert np.allclose(fine[::4, ::4], native, atol=1e-4 * native.max())
    # fraction of the flux per native pixel: ±12 px holds ~95-99% of the light
    assert 0.9 < native.sum() < 1.0
    assert fine[::4, ::4].sum() == pytest.approx(native.sum(), rel=1e-4)
    assert np.unravel_index(native.argmax(), native.shape) == (12, 12)
    # an even image puts the source on the corner shared by its four central samples
    even = psf_image(DET, BAND, 1500.0, 700.0, oversample=4, size=96)
    cx_odd, cy_odd = _centroid(fine)
    cx_even, cy_even = _centroid(even)
    assert cx_even - 47.5 == pytest.approx(cx_odd - 48.0, abs=0.02)
    assert cy_even - 47.5 == pytest.approx(cy_odd - 48.0, abs=0.02)
    # the default size is odd, 2·12·oversample + 1
    assert psf_image(DET, BAND, 1500.0, 700.0, oversample=2).shape == (49, 49)


def test_phase_shift_and_spectrum_change_the_image():
    model = psf_model(DET, BAND)
    shifted = model.image(1500.0, 700.0, oversample=1, size=25, phase=(0.5, 0.0))
    cx, _ = _centroid(shifted)
    cx0, _ = _centroid(model.image(1500.0, 700.0, oversample=1, size=25))
    assert cx - cx0 == pytest.approx(0.5, abs=0.02)
    blue = psf_image(DET, BAND, 1500.0, 700.0, spectrum="A0V")
    red = psf_image(DET, BAND, 1500.0, 700.0, spectrum=3050.0)  # M5V's temperature
    assert red.max() < blue.max()  # redder light: a wider core
    assert np.allclose(red, psf_image(DET, BAND, 1500.0, 700.0, spectrum="M5V"), atol=1e-6)


def test_library_matches_direct_galsim_at_random_positions():
    model = psf_model(DET, BAND)
    rng = np.random.default_rng(3)
    for x, y in rng.uniform(0, 4087, size=(2, 2)):
        lib = model.image(x, y, oversample=4, size=97)
        direct = broadband_image(7, BAND, x, y, oversample=4, size=97, n_wavelengths=6, jitter_mas=8.0)
        assert np.abs(lib - direct).max() < 1e-3 * direct.max()
        assert lib.sum() == pytest.approx(direct.sum(), rel=1e-3)
        shift = np.subtract(_centroid(lib), _centroid(direct)) / 4 * 110.0  # mas
        assert np.hypot(*shift) < 0.5


def test_optical_psf_is_sharper_and_unit_normalised():
    optical = psf_image(DET, BAND, 2043.5, 2043.5, oversample=2, size=101, pixel_convolved=False)
    effective = psf_image(DET, BAND, 2043.5, 2043.5, oversample=2, size=101)
    assert optical.max() > effective.max()
    assert optical.sum() / 4 == pytest.approx(effective.sum() / 4, rel=0.01)


def test_epsf_reference_round_trip_and_band_limited_upsampling(tmp_path):
    lib = build_library("WFI01", "F213", grid=2, n_wavelengths=2, half=6)
    path = tmp_path / "epsf.asdf"
    write_library(path, lib)
    back = read_library(path)
    assert back.psf.shape == lib.psf.shape == (3, 4, 49, 49)
    assert np.allclose(back.psf, lib.psf, atol=1e-7)
    assert back.spectral_types == ("A0V", "G2V", "M5V") and back.oversample == 4
    model = psf_model("WFI01", "F213", library=path)
    assert model.library.source == str(path)
    # upsampling keeps the samples it started from
    up = upsample_epsf(lib.psf[1, 0], MODEL_OVERSAMPLE // 4)
    assert np.allclose(up[::2, ::2], lib.psf[1, 0], atol=1e-6 * lib.psf.max())


@pytest.mark.parametrize("kwargs, words", [
    ({"detector": "WFI19"}, "unknown detector"),
    ({"band": "F999"}, "unknown optical element"),
    ({"band": "GRISM"}, "no imaging PSF"),
    ({"x": 5000.0}, "off the detector"),
    ({"oversample": 0}, "oversample"),
    ({"size": 0}, "size"),
    ({"spectrum": "Z9V"}, "unknown spectral type"),
    ({"spectrum": (np.array([300.0, 400.0]), np.array([1.0, 1.0]))}, "no flux in F158"),
    ({"jitter_mas": 1.0}, "below the library's own jitter"),
])
def test_bad_input_gets_one_line(kwargs, words):
    args = {"detector": DET, "band": BAND, "x": 100.0, "y": 100.0}
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(RomanflowError) as err:
        psf_image(args["detector"], args["band"], args["x"], args["y"], **kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)
