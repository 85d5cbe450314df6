"""A small survey plan shared by the run tests: one detector, two dithered exposures, one filter."""

from romanflow.run.plan import tiled_plan

SMALL = dict(science_size=248, detectors=["WFI01"], filters=["F158"], dither="2")


def small_plan_dict():
    plan = tiled_plan(270.0, 66.0, 0.05, SMALL["filters"], dither=SMALL["dither"], detectors=SMALL["detectors"],
                      science_size=SMALL["science_size"], pointing_error_arcsec=0.3, seed=5, name="small",
                      scene={"seed": 5, "density_per_arcmin2": 1000.0, "star_fraction": 0.9,
                             "refcat_g_limit": 26.5})
    data = plan.to_dict()
    data["registration"] = {"minobj": 5}
    return data
