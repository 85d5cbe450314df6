"""Helpers of the astrometry tests: simulated star fields and errors against the simulator's truth."""

import numpy as np
import pandas as pd

from romanflow import geometry
from romanflow.detector import SMALL_SCIENCE_SIZE
from romanflow.simulate import random_scene
from romanflow.simulate.scene import Scene
from romanflow.validation import rms_mas, sky_errors_mas  # noqa: F401  (used by the tests)

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

