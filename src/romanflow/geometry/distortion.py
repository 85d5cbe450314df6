"""The WFI distortion: per-detector polynomials from pixels to the telescope frame.

For each detector a 2-D polynomial of degree :data:`POLY_DEGREE` maps pixels to
(V2, V3) arcsec, and a fitted inverse polynomial of degree
:data:`INVERSE_DEGREE` maps back (refined by Newton steps where exactness
matters). The coefficients are data, :data:`DISTORTION_PATH`, derived from
galsim.roman's model by :mod:`romanflow.geometry.galsim_fit` (regenerate with
``python tools/make_distortion.py``); the file records the GalSim version, the
fit degrees, the derivation date and the fit RMS. The polynomials reproduce
galsim's model to ~1e-8 mas.

Coordinates of the polynomials (see :mod:`romanflow.kernels.projection`):
forward ``u = (x_full - 2043.5) / 2044`` (same for v/y), with ``x_full`` a 0-based
pixel of the full 4088² science array, ``v2 = Σ fx[i, j] u^i v^j``,
``v3 = Σ fy[i, j] u^i v^j`` (arcsec); inverse ``a = (v2 - v2c) / 300``,
``b = (v3 - v3c) / 300`` (arcsec), ``u = Σ gx[i, j] a^i b^j``, ``v = Σ gy[i, j] a^i b^j``.

Small detectors
---------------
Tests run on ``science_size`` x ``science_size`` arrays (e.g. 248). Such a
detector is the central patch of the real one: its pixel ``(x, y)`` is real
pixel ``(x + o, y + o)`` with ``o = (4088 - science_size) / 2``, so the physics
(scale, distortion, position in the field) is that of the real detector centre.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from romanflow.detector import DETECTORS, N_PIX_SCIENCE, detector_name
from romanflow.errors import InputFileError, ParameterError

#: Degree of the pixel -> (V2, V3) polynomials.
POLY_DEGREE = 5
#: Degree of the fitted inverse polynomials ((V2, V3) -> pixel).
INVERSE_DEGREE = 5
#: Centre of a full detector, 0-based pixel.
PIXEL_CENTER = (N_PIX_SCIENCE - 1) / 2.0
#: Pixel normalisation: full-detector offsets from the centre to [-1, 1] (pixel).
PIXEL_NORM = N_PIX_SCIENCE / 2.0
#: Normalisation of (V2, V3) offsets from a detector centre for the inverse polynomials (arcsec).
V_NORM = 300.0
#: The shipped distortion coefficients.
DISTORTION_PATH = Path(__file__).resolve().parent.parent / "data" / "wfi_distortion.json"


@dataclass(frozen=True)
class DetectorDistortion:
    """Distortion polynomials of one detector, in normalised coordinates (module docstring).

    Attributes
    ----------
    fx, fy : (POLY_DEGREE + 1, POLY_DEGREE + 1) float arrays
        Forward polynomials, (u, v) -> V2 and V3 (arcsec).
    gx, gy : (INVERSE_DEGREE + 1, INVERSE_DEGREE + 1) float arrays
        Inverse polynomials, (a, b) -> u and v.
    v2c, v3c : float
        (V2, V3) of the detector centre (arcsec).
    fit_rms_mas : float
        RMS of the forward polynomials against galsim.roman between the fit nodes (mas).
    """

    fx: np.ndarray
    fy: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    v2c: float
    v3c: float
    fit_rms_mas: float


def distortion_to_dict(d: DetectorDistortion) -> dict:
    """JSON-ready form of one detector's polynomials (floats round-trip exactly)."""
    return {"fx": d.fx.tolist(), "fy": d.fy.tolist(), "gx": d.gx.tolist(), "gy": d.gy.tolist(),
            "v2c": float(d.v2c), "v3c": float(d.v3c), "fit_rms_mas": float(d.fit_rms_mas)}


def read_distortion_file(path=DISTORTION_PATH) -> tuple[dict, dict]:
    """Read a distortion-coefficient file: (header, ``{detector: DetectorDistortion}``).

    The header holds everything but the coefficients (GalSim version, degrees,
    normalisation, derivation pointing and date, fit RMS).
    """
    path = Path(path)
    try:
        tree = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(path, "missing: regenerate it with python tools/make_distortion.py") from None
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"not a readable distortion-coefficient file: {exc}") from None
    header = {k: v for k, v in tree.items() if k != "detectors"}
    expected = {"fit_degree": POLY_DEGREE, "inverse_degree": INVERSE_DEGREE, "pixel_center": PIXEL_CENTER,
                "pixel_norm": PIXEL_NORM, "v_norm": V_NORM}
    wrong = [f"{k}={header.get(k)!r} (expected {v!r})" for k, v in expected.items() if header.get(k) != v]
    detectors = tree.get("detectors") or {}
    missing = [name for name in DETECTORS if name not in detectors]
    if wrong or missing:
        problem = "; ".join(wrong + ([f"no coefficients for {', '.join(missing)}"] if missing else []))
        raise InputFileError(path, f"distortion coefficients do not fit this version: {problem}")
    table = {}
    for name in DETECTORS:
        d = detectors[name]
        arrays = {k: np.ascontiguousarray(d[k], dtype=np.float64) for k in ("fx", "fy", "gx", "gy")}
        table[name] = DetectorDistortion(**arrays, v2c=float(d["v2c"]), v3c=float(d["v3c"]),
                                         fit_rms_mas=float(d["fit_rms_mas"]))
    return header, table


@lru_cache(maxsize=1)
def distortion_table() -> dict:
    """The shipped polynomials of all 18 detectors: ``{detector: DetectorDistortion}`` (read once)."""
    return read_distortion_file(DISTORTION_PATH)[1]


def detector_distortion(detector) -> DetectorDistortion:
    """Polynomials of one detector (``'WFI01'`` … ``'WFI18'`` or 1 … 18)."""
    return distortion_table()[detector_name(detector)]


def patch_offset(science_size: int) -> float:
    """Offset (pixel) of a ``science_size`` central patch in the full detector: (4088 - size) / 2."""
    science_size = int(science_size)
    if not 0 < science_size <= N_PIX_SCIENCE:
        raise ParameterError("science_size", science_size, f"must be 1..{N_PIX_SCIENCE}")
    return (N_PIX_SCIENCE - science_size) / 2.0


def detector_center_v2v3(detector) -> tuple[float, float]:
    """(V2, V3) of a detector's centre pixel (2043.5, 2043.5), arcsec."""
    d = detector_distortion(detector)
    return d.v2c, d.v3c


def fit_rms_mas(detector) -> float:
    """RMS (mas) of the polynomial against galsim.roman at points between the fit nodes."""
    return detector_distortion(detector).fit_rms_mas


def _poly_model(c, scale):
    from astropy.modeling.models import Polynomial2D

    degree = c.shape[0] - 1
    params = {f"c{i}_{j}": float(c[i, j]) / scale ** (i + j) for i in range(degree + 1) for j in range(degree + 1 - i)}
    return Polynomial2D(degree, **params)


def distortion_transform(detector, science_size: int = N_PIX_SCIENCE):
    """Astropy model: detector pixel (x, y), 0-based -> (V2, V3) arcsec, with an analytic inverse.

    For ``science_size`` < 4088 the detector is the central patch of the real one
    (pixel ``(x, y)`` of the patch is real pixel ``(x + o, y + o)``,
    ``o = (4088 - science_size) / 2``). The inverse is a fitted polynomial,
    accurate to about 1e-4 pixel; :class:`~romanflow.geometry.DetectorProjection`
    refines it exactly.
    """
    from astropy.modeling.models import Mapping, Shift

    f = detector_distortion(detector)
    shift = patch_offset(science_size) - PIXEL_CENTER
    forward = (Shift(shift) & Shift(shift)) | Mapping((0, 1, 0, 1)) | (
        _poly_model(f.fx, PIXEL_NORM) & _poly_model(f.fy, PIXEL_NORM))
    gx = np.asarray(f.gx) * PIXEL_NORM  # polynomial now gives centred pixel offsets
    gy = np.asarray(f.gy) * PIXEL_NORM
    inverse = (Shift(-f.v2c) & Shift(-f.v3c)) | Mapping((0, 1, 0, 1)) | (
        _poly_model(gx, V_NORM) & _poly_model(gy, V_NORM)) | (Shift(-shift) & Shift(-shift))
    forward.inverse = inverse
    forward.name = f"{detector_name(detector)}_distortion"
    return forward
