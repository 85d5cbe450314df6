"""Spectra of point sources and their photon weights across a WFI bandpass.

A *spectrum* is given as

* a spectral type (``'A0V'``, ``'G2V'``, ``'M5V'`` ... see :data:`SPECTRAL_TYPES`),
  taken as a blackbody at the type's effective temperature;
* a temperature (K, a positive number): a blackbody;
* an SED table: ``(wavelength_nm, f_lambda)`` as a pair of 1-D arrays, an
  ``(n, 2)`` array, or a table with ``wavelength`` and ``flux`` columns;
  ``f_lambda`` is an energy flux density (any unit), linearly interpolated
  and zero outside the table.

A detector counts photons, so the PSF of a source is the mean of the
monochromatic PSFs weighted by ``T(λ) · f_λ(λ) · λ`` (``T`` the bandpass
throughput): :func:`photon_weights` integrates that weight over sub-bands.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from romanflow.detector import GALSIM_BANDS, IMAGING_FILTERS, check_filter
from romanflow.errors import ParameterError, RomanflowError

__all__ = ["SPECTRAL_TYPES", "DEFAULT_SPECTRUM", "band_name", "band_limits", "photon_weights",
           "spectrum_function", "spectrum_label", "temperature_from_colour"]

#: Effective temperatures (K) of main-sequence spectral types (blackbody stand-ins).
SPECTRAL_TYPES = {"O5V": 42000.0, "B0V": 31000.0, "B5V": 15500.0, "A0V": 9700.0, "A5V": 8100.0,
                  "F0V": 7200.0, "F5V": 6500.0, "G0V": 5900.0, "G2V": 5770.0, "G5V": 5600.0,
                  "K0V": 5250.0, "K5V": 4400.0, "M0V": 3850.0, "M2V": 3550.0, "M5V": 3050.0}
#: Spectrum used when none is given.
DEFAULT_SPECTRUM = "G2V"
#: Fraction of the peak throughput that bounds a band.
THROUGHPUT_FLOOR = 0.01

_H_C_OVER_K = 1.4387769e7  # h c / k (nm K)


def band_name(optical_element: str) -> str:
    """galsim.roman band name of an imaging filter (``'F158'`` -> ``'H158'``); one-line error otherwise."""
    name = check_filter(optical_element)
    if name not in IMAGING_FILTERS:
        raise RomanflowError(f"no imaging PSF for optical element {name}: expected one of {', '.join(IMAGING_FILTERS)}")
    return GALSIM_BANDS[name]


@lru_cache(maxsize=16)
def _bandpass(band: str):
    import galsim.roman as roman

    return roman.getBandpasses(AB_zeropoint=True)[band]


@lru_cache(maxsize=16)
def band_limits(band: str) -> tuple[float, float]:
    """Wavelengths (nm) where the throughput of a galsim.roman band rises above :data:`THROUGHPUT_FLOOR` of its peak."""
    bp = _bandpass(band)
    wave = np.linspace(bp.blue_limit, bp.red_limit, 2001)
    thr = bp(wave)
    inside = np.nonzero(thr >= THROUGHPUT_FLOOR * thr.max())[0]
    return float(wave[inside[0]]), float(wave[inside[-1]])


def _planck_photons(wave_nm, temperature):
    """Photon flux density of a blackbody (arbitrary scale) at wavelengths in nm."""
    x = np.minimum(_H_C_OVER_K / (np.asarray(wave_nm, float) * temperature), 700.0)
    return wave_nm ** -4.0 / np.expm1(x)


def _table(spectrum):
    if hasattr(spectrum, "colnames") or hasattr(spectrum, "columns"):
        names = list(getattr(spectrum, "colnames", None) or spectrum.columns)
        wave_col = next((c for c in names if str(c).lower().startswith("wave")), None)
        flux_col = next((c for c in names if str(c).lower() in ("flux", "f_lambda", "flambda")), None)
        if wave_col is None or flux_col is None:
            raise ParameterError("spectrum", names, "an SED table needs 'wavelength' (nm) and 'flux' columns")
        wave, flux = np.asarray(spectrum[wave_col], float), np.asarray(spectrum[flux_col], float)
    else:
        array = np.asarray(spectrum, dtype=float)
        if array.ndim == 2 and array.shape[1] == 2 and array.shape[0] != 2:
            array = array.T
        if array.ndim != 2 or array.shape[0] != 2 or array.shape[1] < 2:
            raise ParameterError("spectrum", f"array of shape {array.shape}",
                                 "an SED table is (wavelength_nm, f_lambda): two 1-D arrays of >= 2 values")
        wave, flux = array
    if not (np.all(np.isfinite(wave)) and np.all(np.isfinite(flux))) or np.any(flux < 0):
        raise ParameterError("spectrum", "SED table", "wavelengths and fluxes must be finite, fluxes >= 0")
    order = np.argsort(wave)
    return wave[order], flux[order]


def spectrum_function(spectrum):
    """Photon flux density (arbitrary scale) as a function of wavelength (nm) for a spectrum specification."""
    if spectrum is None:
        spectrum = DEFAULT_SPECTRUM
    if isinstance(spectrum, str):
        key = spectrum.strip().upper()
        if key not in SPECTRAL_TYPES:
            raise ParameterError("spectrum", spectrum,
                                 f"unknown spectral type: expected a temperature (K), an SED table or one of "
                                 f"{', '.join(SPECTRAL_TYPES)}")
        temperature = SPECTRAL_TYPES[key]
        return lambda w: _planck_photons(w, temperature)
    if np.ndim(spectrum) == 0:
        try:
            temperature = float(spectrum)
        except (TypeError, ValueError):
            raise ParameterError("spectrum", spectrum, "expected a spectral type, a temperature (K) or an SED table") from None
        if not (np.isfinite(temperature) and temperature > 0):
            raise ParameterError("spectrum", spectrum, "a temperature must be a positive number of kelvin")
        return lambda w: _planck_photons(w, temperature)
    wave, flux = _table(spectrum)
    return lambda w: np.interp(w, wave, flux * wave, left=0.0, right=0.0)


def spectrum_label(spectrum) -> str:
    """Short text naming a spectrum (for metadata and cache keys of named spectra)."""
    if spectrum is None:
        return DEFAULT_SPECTRUM
    if isinstance(spectrum, str):
        return spectrum.strip().upper()
    if np.ndim(spectrum) == 0:
        return f"{float(spectrum):.0f}K"
    return "SED table"


def photon_weights(optical_element: str, spectrum, n_wavelengths: int, *, samples_per_bin: int = 24):
    """Quadrature of a band: sub-band centres (nm) and normalised photon weights of a spectrum.

    The band (throughput above :data:`THROUGHPUT_FLOOR` of its peak) is cut
    into ``n_wavelengths`` equal sub-bands; each weight is the integral of
    ``T(λ) · photon flux density`` over its sub-band, and the weights sum to 1.

    Raises
    ------
    ParameterError
        If the spectrum has no flux in the band (e.g. an SED table that does
        not overlap it).
    """
    band = band_name(optical_element)
    lo, hi = band_limits(band)
    edges = np.linspace(lo, hi, int(n_wavelengths) + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    fine = np.linspace(lo, hi, int(n_wavelengths) * samples_per_bin + 1)
    mid = 0.5 * (fine[1:] + fine[:-1])
    density = _bandpass(band)(mid) * spectrum_function(spectrum)(mid)
    weights = density.reshape(int(n_wavelengths), samples_per_bin).sum(axis=1)
    total = weights.sum()
    if not (np.isfinite(total) and total > 0):
        raise ParameterError("spectrum", spectrum_label(spectrum),
                             f"has no flux in {check_filter(optical_element)} ({lo:.0f}-{hi:.0f} nm)")
    return centres, weights / total


@lru_cache(maxsize=16)
def _colour_table(blue: str, red: str):
    temps = np.geomspace(2000.0, 50000.0, 200)
    colours = []
    for t in temps:
        fluxes = []
        for f in (blue, red):
            band = band_name(f)
            lo, hi = band_limits(band)
            w = np.linspace(lo, hi, 400)
            photons = _bandpass(band)(w) * _planck_photons(w, t)
            # AB: mean f_nu over the band weighted by photons/ (h nu) ~ ∫ T f_λ λ dλ / ∫ T c/λ dλ
            fluxes.append(np.trapezoid(photons, w) / np.trapezoid(_bandpass(band)(w) / w, w))
        colours.append(-2.5 * np.log10(fluxes[0] / fluxes[1]))
    return temps, np.asarray(colours)


def temperature_from_colour(colour, blue: str = "F062", red: str = "F158"):
    """Blackbody temperature (K) with an AB colour ``blue - red``, clipped to 2000-50000 K."""
    temps, colours = _colour_table(check_filter(blue), check_filter(red))
    order = np.argsort(colours)
    return np.interp(np.asarray(colour, float), colours[order], temps[order])
