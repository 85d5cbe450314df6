"""The small survey run the archive tests register: one detector, two exposures, one filter."""

from pathlib import Path

from romanflow.run.plan import plan_from_dict, tiled_plan


def small_plan():
    plan = tiled_plan(270.0, 66.0, 0.05, ["F158"], dither="2", detectors=["WFI01"], science_size=248,
                      pointing_error_arcsec=0.3, seed=5, name="archive_small",
                      scene={"seed": 5, "density_per_arcmin2": 1000.0, "star_fraction": 0.9, "refcat_g_limit": 26.5})
    data = plan.to_dict()
    data["registration"] = {"minobj": 5}
    data["catalog"] = {"psf_photometry": False}
    return plan_from_dict(data, source="archive-small-plan")


def run_small(folder: Path) -> Path:
    """Run the plan into ``folder``, registering every product in ``folder/archive.db`` as it is written."""
    from romanflow.archive.runs import run_with_archive

    folder = Path(folder)
    report, _, final = run_with_archive(small_plan(), folder, f"sqlite:///{folder / 'archive.db'}", progress=False)
    assert not report.failed and not report.registration_failures and not report.hook_failures
    assert not final.failed and not final.registered  # everything was registered while the run wrote it
    return folder
