"""One simulated exposure (six detectors, 248-pixel patches) calibrated to L2, shared by the astrometry tests."""

import pandas as pd
import pytest

from romanflow.calibrate import calibrate
from romanflow.simulate import simulate

from astro_truth import COMMANDED, DETECTORS, POINTING_ERROR, SIZE, star_field


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """dict: l1, l2 (paths), truth (DataFrames per detector), gaia (path), pointing error."""
    out = tmp_path_factory.mktemp("exposure")
    scene = star_field(COMMANDED, DETECTORS, seed=40)
    sim = simulate(scene, DETECTORS, "F158", pointing=COMMANDED, pointing_error=POINTING_ERROR,
                   science_size=SIZE, seed=7, output_dir=out)
    l2 = calibrate(sim["l1"], out / "l2", workers=2)
    truth = [pd.read_parquet(p) for p in sim["sources"]]
    return {"l1": sim["l1"], "l2": l2, "truth": truth, "gaia": sim["gaia"], "dir": out}
