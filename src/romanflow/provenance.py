"""What a processing step did, recorded in a product's metadata.

Steps mark themselves in ``meta.cal_step`` and name the reference files they
used in ``meta.ref_file``, as the Roman L2 schema lays these out.
"""

from __future__ import annotations

from pathlib import Path

#: Every step the L2 schema records in ``meta.cal_step`` (required keys).
L2_CAL_STEPS = (
    "assign_wcs", "dark", "dark_decay", "dq_init", "flat_field", "flux", "linearity",
    "outlier_detection", "photom", "source_catalog", "ramp_fit", "refpix", "saturation",
    "skymatch", "tweakreg", "wfi18_transient",
)

COMPLETE, SKIPPED, INCOMPLETE = "COMPLETE", "SKIPPED", "INCOMPLETE"


def mark_step(meta: dict, step: str, status: str = COMPLETE) -> None:
    """Record ``meta.cal_step.<step> = status``, initialising every known step."""
    cal_step = meta.setdefault("cal_step", {})
    for name in L2_CAL_STEPS:
        cal_step.setdefault(name, INCOMPLETE)
    cal_step[step] = status


def record_reference(meta: dict, reftype: str, path) -> None:
    """Record the reference file a step used in ``meta.ref_file.<reftype>`` (its name; ``N/A`` for none)."""
    meta.setdefault("ref_file", {})[reftype] = Path(path).name if path else "N/A"
