"""L1 -> L2: calibrate one detector's ramps into a rate image (DN/s).

>>> from romanflow.calibrate import calibrate, CalibrationOptions
>>> calibrate(["r..._wfi01_uncal.asdf"], "out/")                     # doctest: +SKIP
"""

from romanflow.calibrate.pipeline import (
    STEPS,
    CalibrationOptions,
    calibrate,
    calibrate_exposure,
    calibrate_file,
    check_calibration_request,
    output_paths,
    resolve_references,
)

__all__ = ["STEPS", "CalibrationOptions", "calibrate", "calibrate_exposure", "calibrate_file",
           "check_calibration_request", "output_paths", "resolve_references"]
