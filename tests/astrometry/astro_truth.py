"""Helpers of the astrometry tests: simulated star fields and errors against the simulator's truth."""

import numpy as np
import pandas as pd

from romanflow import geometry
from romanflow.detector import SMALL_SCIENCE_SIZE
from romanflow.simulate import random_scene
from romanflow.simulate.scene import Scene

SIZE = SMALL_SCIENCE_SIZE
DETECTORS = ("WFI01", "WFI03", "WFI08", "WFI10", "WFI16", "WFI18")  # spread over the field
COMMANDED = geometry.pointing_for(270.0, 66.0, 0.0)
POINTING_ERROR = (1.4, -1.4, 0.05)  # true minus commanded: arcsec, arcsec, deg (2" and 0.05 deg)


def star_field(pointing, detectors, *, seed, n_sources=150):
    """Bright stars (and some galaxies) around the centre of each detector's patch."""
    tables, offset = [], 0
    centre = np.array([(SIZE - 1) / 2.0])
    for k, det in enumerate(detectors):
        ra, dec = geometry.DetectorProjection(det, pointing, SIZE).pixel_to_world(centre, centre)
        t = random_scene(float(ra[0]), float(dec[0]), 0.0075, n_sources=n_sources, star_fraction=0.9,
                         faint_limit=20.5, seed=seed + k).table
        t["source_id"] += offset
        offset += len(t)
        tables.append(t)
    return Scene(pd.concat(tables, ignore_index=True))


def sky_errors_mas(image, catalog, truth, *, snr_min=100.0):
    """(n, 2) sky-position errors (mas, east and north) of detected stars above ``snr_min``.

    Each unflagged catalog source is paired with the nearest true star (within
    0.5 pixel) and its PSF-fit pixel position is carried to the sky with the
    image's WCS.
    """
    from scipy.spatial import cKDTree

    stars = truth[truth["type"] == "star"]
    x, y = np.asarray(catalog["x"].value), np.asarray(catalog["y"].value)
    if len(x) == 0:
        return np.zeros((0, 2))
    d, i = cKDTree(np.column_stack([stars["x"], stars["y"]])).query(np.column_stack([x, y]))
    use = (d < 0.5) & (np.asarray(catalog["snr"]) > snr_min) & (np.asarray(catalog["flags"]) == 0)
    ra, dec = image.wcs(x[use], y[use], with_bounding_box=False)
    true = stars.iloc[i[use]]
    return np.column_stack([(ra - true["ra"].to_numpy()) * np.cos(np.radians(dec)) * 3.6e6,
                            (dec - true["dec"].to_numpy()) * 3.6e6])


def rms_mas(errors):
    return float(np.sqrt(np.mean(np.sum(errors**2, axis=1)))) if len(errors) else float("nan")
