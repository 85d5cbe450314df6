"""Deriving the distortion polynomials from galsim.roman (build time only).

galsim.roman's model (SIP coefficients and SCA positions of the 2021-02-04
optical design) is placed in the telescope frame with the WFI centre at the
``WFI_CEN`` reference point and galsim's observatory position angle equal to
``roll_ref``. For each detector, pixel -> (V2, V3) polynomials are fitted on a
33 x 33 grid of nodes and checked at the 32 x 32 points between them.

The focal plane of :mod:`romanflow.geometry` is rigid. galsim orients each
detector from the sky's north at the detector centre, which equals a rigid
focal plane when its focal-plane axes lie along north (``roll_ref`` 60 or 240
deg, where the two agree to < 1e-3 mas) and departs from it by up to ~6 mas at
other rolls; the polynomials are derived at such an aligned pointing
(:data:`DERIVATION_RA`, :data:`DERIVATION_DEC`, :data:`DERIVATION_PA`).

:func:`write_distortion_file` writes the result to
:data:`~romanflow.geometry.distortion.DISTORTION_PATH`; at run time only that
file is read.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import numpy as np

from romanflow.detector import DETECTORS, N_PIX_SCIENCE, detector_name, detector_number
from romanflow.errors import RomanflowError
from romanflow.geometry.distortion import (
    DISTORTION_PATH,
    INVERSE_DEGREE,
    PIXEL_CENTER,
    PIXEL_NORM,
    POLY_DEGREE,
    V_NORM,
    DetectorDistortion,
    distortion_to_dict,
)
from romanflow.geometry.pointing import WFI_CEN_V2V3, Pointing, pointing_for, world_to_v2v3
from romanflow.kernels.projection import fit_poly2d, horner2d

#: WFI centre (deg) and roll (deg) of the derivation pointing: roll 240 deg puts
#: galsim's focal-plane axes along north, where its model is that of a rigid focal plane.
DERIVATION_RA, DERIVATION_DEC, DERIVATION_PA = 90.0, 0.0, 240.0
#: Date handed to galsim.roman for the derivation pointing (one at which it allows that pointing).
DERIVATION_DATE = datetime.datetime(2025, 3, 20, 9, 2, 0)
#: Fit nodes per detector side.
FIT_NODES = 33


def galsim_wcs(pointing: Pointing, detectors=None, date: datetime.datetime | None = None) -> dict:
    """galsim.roman's WCS for a WFI_CEN pointing: ``{detector_name: GSFitsWCS}``.

    galsim's image position is this package's pixel plus one. ``date`` only has
    to be one at which galsim allows the pointing (sun angle); by default a date
    is searched for.
    """
    import galsim
    import galsim.roman as roman

    if abs(pointing.v2_ref - WFI_CEN_V2V3[0]) > 1e-6 or abs(pointing.v3_ref - WFI_CEN_V2V3[1]) > 1e-6:
        raise RomanflowError("galsim.roman WCS is defined for WFI_CEN pointings only")
    world = galsim.CelestialCoord(pointing.ra_ref * galsim.degrees, pointing.dec_ref * galsim.degrees)
    if date is None:
        date = _allowed_date(world)
    scas = [detector_number(d) for d in (detectors or DETECTORS)]
    wcs = roman.getWCS(world_pos=world, PA=pointing.roll_ref * galsim.degrees, date=date, SCAs=scas)
    return {detector_name(k): v for k, v in wcs.items()}


def _allowed_date(world):
    import galsim.roman as roman

    start = datetime.datetime(2027, 1, 1)
    for day in range(0, 366, 3):
        date = start + datetime.timedelta(days=day)
        if roman.allowedPos(world, date):
            return date
    raise RomanflowError("galsim.roman allows this position on no date of 2027")


def fit_distortion() -> dict:
    """Fit the pixel <-> (V2, V3) polynomials of all 18 detectors to galsim.roman's model.

    Returns
    -------
    dict
        ``{detector: DetectorDistortion}``, with each fit's RMS (mas) at points
        between the fit nodes.
    """
    pointing = pointing_for(DERIVATION_RA, DERIVATION_DEC, DERIVATION_PA)
    wcs = galsim_wcs(pointing, date=DERIVATION_DATE)
    grid = np.linspace(-0.5, N_PIX_SCIENCE - 0.5, FIT_NODES)
    xg, yg = (a.ravel() for a in np.meshgrid(grid, grid))
    ug, vg = (xg - PIXEL_CENTER) / PIXEL_NORM, (yg - PIXEL_CENTER) / PIXEL_NORM
    # independent check points between the fit nodes
    mid = 0.5 * (grid[1:] + grid[:-1])
    xc, yc = (a.ravel() for a in np.meshgrid(mid, mid))
    uc, vc = (xc - PIXEL_CENTER) / PIXEL_NORM, (yc - PIXEL_CENTER) / PIXEL_NORM
    zero = np.zeros(1)
    fits = {}
    for name in DETECTORS:
        w = wcs[name]
        ra, dec = w.toWorld(xg + 1.0, yg + 1.0, units="deg")
        v2, v3 = world_to_v2v3(ra, dec, pointing)
        fx = fit_poly2d(ug, vg, v2, POLY_DEGREE)
        fy = fit_poly2d(ug, vg, v3, POLY_DEGREE)
        v2c, v3c = float(horner2d(fx, zero, zero)[0]), float(horner2d(fy, zero, zero)[0])
        a, b = (v2 - v2c) / V_NORM, (v3 - v3c) / V_NORM
        gx = fit_poly2d(a, b, ug, INVERSE_DEGREE)
        gy = fit_poly2d(a, b, vg, INVERSE_DEGREE)
        rac, decc = w.toWorld(xc + 1.0, yc + 1.0, units="deg")
        v2t, v3t = world_to_v2v3(rac, decc, pointing)
        d2 = horner2d(fx, uc, vc) - v2t
        d3 = horner2d(fy, uc, vc) - v3t
        rms = float(np.sqrt(np.mean(d2**2 + d3**2)) * 1000.0)
        fits[name] = DetectorDistortion(fx, fy, gx, gy, v2c, v3c, rms)
    return fits


def write_distortion_file(path=DISTORTION_PATH, table: dict | None = None) -> Path:
    """Fit the polynomials (unless ``table`` is given) and write them as JSON; returns the path.

    The file records the GalSim version, the fit degrees and normalisation, the
    derivation pointing, the date it was derived and the fit RMS (mas).
    """
    import galsim

    table = fit_distortion() if table is None else table
    tree = {
        "description": "WFI distortion: per-detector polynomials pixel <-> (V2, V3) arcsec fitted to "
                       "galsim.roman's model; see romanflow.geometry.distortion for the coordinates",
        "galsim_version": galsim.__version__,
        "derived": datetime.date.today().isoformat(),
        "fit_degree": POLY_DEGREE,
        "inverse_degree": INVERSE_DEGREE,
        "pixel_center": PIXEL_CENTER,
        "pixel_norm": PIXEL_NORM,
        "v_norm": V_NORM,
        "fit_nodes": FIT_NODES,
        "derivation_pointing": {"ra_deg": DERIVATION_RA, "dec_deg": DERIVATION_DEC, "pa_deg": DERIVATION_PA,
                                "galsim_date": DERIVATION_DATE.isoformat()},
        "fit_rms_mas_max": max(d.fit_rms_mas for d in table.values()),
        "detectors": {name: distortion_to_dict(table[name]) for name in DETECTORS},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(tree, indent=1)
    # one line per coefficient row
    text = re.sub(r"\[\s+([^\[\]]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    tmp.write_text(text + "\n")
    tmp.replace(path)
    return path
