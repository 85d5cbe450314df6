"""Survey plans: what to observe (or which files to process), checked before any work starts.

A plan is a YAML file::

    name: deep-field
    science_size: 4088            # pixels per detector side (248 for quick runs)
    scene:                        # the simulated sky shared by every exposure
      density_per_arcmin2: 150.0
      star_fraction: 0.1
      seed: 0
      refcat_g_limit: 21.0        # depth of the Gaia-like reference catalog (G mag)
    exposures:
      - id: v001_f158_d1          # unique; names the exposure's files
        pointing: {ra: 270.0, dec: 66.0, pa: 0.0}   # tile centre (deg)
        dither: [0.0, 0.0]        # offset of the WFI centre (dRA cos Dec, dDec) in arcsec
        pointing_error: [0.0, 0.0, 0.0]   # true minus commanded pointing (arcsec, arcsec, deg)
        filter: F158
        ma_table: 4
        detectors: [WFI01, WFI02]
        seed: 1
        ids: {program: 1, pass: 1, observation: 1, visit: 1, exposure: 1}
        start_time: "2027-06-01T00:00:00"
    registration: {minobj: 10, snr_threshold: 5.0}
    mosaic: {cutout: true, margin_pixels: 40}

or, for existing data, ``inputs`` (folders or files of L1 ``*_uncal.asdf`` and/or
L2 ``*_cal.asdf``) with an optional astrometric ``refcat`` (Parquet, Gaia
columns) instead of ``exposures`` and ``scene``. Relative paths in a plan file
are relative to the file.

:func:`check_plan` validates everything that can be checked without doing the
work (filters, MA tables, detectors, sizes, unique output names, input files)
and raises one :class:`~romanflow.errors.RomanflowError` listing every problem.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from romanflow.detector import (
    DEFAULT_MA_TABLE,
    DETECTORS,
    IMAGING_FILTERS,
    MA_TABLES,
    N_PIX_SCIENCE,
    PIXEL_SCALE,
    total_size,
)
from romanflow.errors import InputFileError, RomanflowError

#: Dither patterns: offsets of the WFI centre in units of the dither step (see :func:`dither_offsets`).
DITHER_PATTERNS = {
    "none": ((0.0, 0.0),),
    "2": ((0.0, 0.0), (1.0, 1.0)),
    "4": ((0.0, 0.0), (1.0, 0.5), (0.5, 1.0), (1.5, 1.5)),
}


@dataclass(frozen=True)
class ExposurePlan:
    """One exposure: a pointing, a filter, an MA table and the detectors to simulate."""

    id: str
    ra: float
    dec: float
    pa: float
    filter: str
    ma_table: int = DEFAULT_MA_TABLE
    detectors: tuple = ("WFI01",)
    dither: tuple = (0.0, 0.0)
    pointing_error: tuple = (0.0, 0.0, 0.0)
    seed: int = 0
    ids: dict = field(default_factory=dict)
    start_time: str = "2027-06-01T00:00:00"

    def to_dict(self) -> dict:
        d = asdict(self)
        return {
            "id": d["id"],
            "pointing": {"ra": d["ra"], "dec": d["dec"], "pa": d["pa"]},
            "dither": [float(v) for v in d["dither"]],
            "pointing_error": [float(v) for v in d["pointing_error"]],
            "filter": d["filter"],
            "ma_table": int(d["ma_table"]),
            "detectors": list(d["detectors"]),
            "seed": int(d["seed"]),
            "ids": dict(d["ids"]),
            "start_time": str(d["start_time"]),
        }


@dataclass
class SurveyPlan:
    """A whole survey plan (see the module docstring for the YAML layout)."""

    name: str = "survey"
    science_size: int = N_PIX_SCIENCE
    exposures: list = field(default_factory=list)
    scene: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    refcat: str | None = None
    registration: dict = field(default_factory=dict)
    mosaic: dict = field(default_factory=dict)
    catalog: dict = field(default_factory=dict)
    source: str | None = None  #: the file the plan was read from

    @property
    def simulated(self) -> bool:
        return not self.inputs

    @property
    def filters(self) -> list[str]:
        return sorted({e.filter for e in self.exposures})

    @property
    def n_detectors(self) -> int:
        """Detector exposures the plan simulates."""
        return sum(len(e.detectors) for e in self.exposures)

    def to_dict(self) -> dict:
        d = {"name": self.name, "science_size": int(self.science_size)}
        if self.inputs:
            d["inputs"] = [str(p) for p in self.inputs]
            if self.refcat:
                d["refcat"] = str(self.refcat)
        else:
            d["scene"] = dict(self.scene)
            d["exposures"] = [e.to_dict() for e in self.exposures]
        for key in ("registration", "mosaic", "catalog"):
            if getattr(self, key):
                d[key] = dict(getattr(self, key))
        return d


# ----------------------------------------------------------------------------- reading
def _exposure_from_dict(item, k: int, problems: list) -> ExposurePlan | None:
    where = f"exposures[{k}]"
    if not isinstance(item, dict):
        problems.append(f"{where}: expected a mapping")
        return None
    pointing = item.get("pointing") or {}
    try:
        return ExposurePlan(
            id=str(item.get("id", f"e{k + 1:04d}")),
            ra=float(pointing["ra"]), dec=float(pointing["dec"]), pa=float(pointing.get("pa", 0.0)),
            filter=str(item["filter"]).upper(),
            ma_table=int(item.get("ma_table", DEFAULT_MA_TABLE)),
            detectors=tuple(str(d).upper() for d in (item.get("detectors") or ["WFI01"])),
            dither=tuple(float(v) for v in item.get("dither", (0.0, 0.0))),
            pointing_error=tuple(float(v) for v in item.get("pointing_error", (0.0, 0.0, 0.0))),
            seed=int(item.get("seed", 0)),
            ids=dict(item.get("ids") or {}),
            start_time=str(item.get("start_time", "2027-06-01T00:00:00")),
        )
    except KeyError as exc:
        problems.append(f"{where}: missing {exc.args[0]!r}")
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}: {exc}")
    return None


def plan_from_dict(data: dict, base: Path | None = None, source: str | None = None) -> SurveyPlan:
    """Build a plan from its YAML mapping (not yet checked: see :func:`check_plan`)."""
    where = source or "plan"
    if not isinstance(data, dict):
        raise RomanflowError(f"{where}: a plan is a YAML mapping with 'exposures' or 'inputs'")
    known = {"name", "science_size", "exposures", "scene", "inputs", "refcat", "registration", "mosaic", "catalog"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RomanflowError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    problems: list[str] = []
    exposures = [_exposure_from_dict(item, k, problems) for k, item in enumerate(data.get("exposures") or [])]
    if problems:
        raise RomanflowError(f"{where}: " + "; ".join(problems))

    def resolve(p):
        p = Path(str(p)).expanduser()
        return p if p.is_absolute() or base is None else base / p

    try:
        science_size = int(data.get("science_size", N_PIX_SCIENCE))
    except (TypeError, ValueError):
        raise RomanflowError(f"{where}: science_size must be an integer number of pixels") from None
    return SurveyPlan(
        name=str(data.get("name", "survey")),
        science_size=science_size,
        exposures=exposures,
        scene=dict(data.get("scene") or {}),
        inputs=[resolve(p) for p in (data.get("inputs") or [])],
        refcat=str(resolve(data["refcat"])) if data.get("refcat") else None,
        registration=dict(data.get("registration") or {}),
        mosaic=dict(data.get("mosaic") or {}),
        catalog=dict(data.get("catalog") or {}),
        source=source,
    )


def load_plan(path) -> SurveyPlan:
    """Read a plan YAML file, or treat a folder of L1/L2 files as a plan over existing data."""
    import yaml

    path = Path(path)
    if path.is_dir():
        return SurveyPlan(name=path.name or "survey", inputs=[path], source=str(path))
    if not path.exists():
        raise InputFileError(path, "no such plan file or folder")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not a YAML plan: {str(exc).splitlines()[0]}") from None
    return plan_from_dict(data, base=path.parent, source=str(path))


def write_plan(plan: SurveyPlan, path) -> Path:
    """Write a plan as YAML (atomically)."""
    import yaml

    from romanflow.formats import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(plan.to_dict(), sort_keys=False))
    return path


# ----------------------------------------------------------------------------- checking
def exposure_root(exposure: ExposurePlan) -> str:
    """File-name root of an exposure (``r<program>...<visit>_<exposure>``), from its ids."""
    return observation_ids(exposure).root


def observation_ids(exposure: ExposurePlan):
    from romanflow.simulate import ObservationIds

    ids = dict(exposure.ids)
    if "pass" in ids:
        ids["pass_"] = ids.pop("pass")
    allowed = {f.name for f in ObservationIds.__dataclass_fields__.values()}
    bad = sorted(set(ids) - allowed)
    if bad:
        raise RomanflowError(f"exposure {exposure.id}: unknown ids {', '.join(bad)} "
                             f"(use program, execution_plan, pass, segment, observation, visit, exposure)")
    return ObservationIds(**{k: int(v) for k, v in ids.items()})


def check_plan(plan: SurveyPlan) -> None:
    """Raise a RomanflowError naming every problem of the plan; return None when it can run."""
    where = plan.source or "plan"
    problems: list[str] = []
    try:
        total_size(plan.science_size)
    except RomanflowError as exc:
        problems.append(str(exc))
    if plan.inputs:
        if plan.exposures:
            problems.append("give either 'exposures' (simulate) or 'inputs' (existing files), not both")
        for p in plan.inputs:
            if not Path(p).exists():
                problems.append(f"input {p}: no such file or folder")
        if plan.refcat and not Path(plan.refcat).exists():
            problems.append(f"refcat {plan.refcat}: no such file")
    elif not plan.exposures:
        problems.append("the plan has no exposures and no inputs")
    seen_ids: dict[str, int] = {}
    seen_files: dict[str, str] = {}
    for k, e in enumerate(plan.exposures):
        label = f"exposure {e.id!r}"
        if e.id in seen_ids:
            problems.append(f"{label}: id used twice (exposures {seen_ids[e.id]} and {k})")
        seen_ids[e.id] = k
        if e.filter not in IMAGING_FILTERS:
            problems.append(f"{label}: unknown filter {e.filter!r} (imaging filters: {', '.join(IMAGING_FILTERS)})")
        if e.ma_table not in MA_TABLES:
            problems.append(f"{label}: unknown MA table {e.ma_table} (known: {', '.join(map(str, sorted(MA_TABLES)))})")
        bad = [d for d in e.detectors if d not in DETECTORS]
        if bad:
            problems.append(f"{label}: unknown detector(s) {', '.join(bad)} (WFI01..WFI18)")
        if len(set(e.detectors)) != len(e.detectors):
            problems.append(f"{label}: a detector is listed twice")
        if not -90.0 <= e.dec <= 90.0:
            problems.append(f"{label}: dec {e.dec} outside [-90, 90]")
        if len(e.dither) != 2 or len(e.pointing_error) != 3:
            problems.append(f"{label}: dither needs 2 values, pointing_error 3")
        try:
            root = exposure_root(e)
        except (RomanflowError, TypeError, ValueError) as exc:
            problems.append(f"{label}: {exc}")
            continue
        for d in e.detectors:
            name = f"{root}_{d.lower()}"
            if name in seen_files:
                problems.append(f"{label}: output {name}_uncal.asdf also written by exposure "
                                f"{seen_files[name]!r} (give the exposures different ids: visit/exposure numbers)")
            seen_files[name] = e.id
    for key, value in plan.scene.items():
        if key not in ("density_per_arcmin2", "star_fraction", "seed", "faint_limit", "refcat_g_limit"):
            problems.append(f"scene: unknown key {key!r}")
    if problems:
        raise RomanflowError(f"{where}: " + "; ".join(problems))


# ----------------------------------------------------------------------------- generating
def wfi_extent_deg() -> tuple[float, float]:
    """Width and height (deg) of the box around the 18-detector field at PA 0 (the tiling step before overlap).

    The detector array is tilted on the sky at PA 0, so the box (~0.74 x 0.89 deg) is larger than
    the 0.28 deg² field: tiles overlap rather than leave gaps.
    """
    import numpy as np

    from romanflow import geometry

    pointing = geometry.pointing_for(0.0, 0.0, 0.0)
    corners = np.concatenate([geometry.DetectorProjection(d, pointing).footprint() for d in DETECTORS])
    ra = (corners[:, 0] + 180.0) % 360.0 - 180.0
    return float(ra.max() - ra.min()), float(corners[:, 1].max() - corners[:, 1].min())


def dither_offsets(pattern: str, science_size: int) -> list[tuple[float, float]]:
    """Dither offsets (arcsec) of a pattern: steps of a tenth of a detector plus half a pixel.

    For full detectors the step is about 45 arcsec (fills part of the gaps between
    detectors and samples sub-pixel phases); it shrinks with the science size so
    small test patches still overlap.
    """
    if pattern not in DITHER_PATTERNS:
        raise RomanflowError(f"unknown dither pattern {pattern!r}: choose from {', '.join(DITHER_PATTERNS)}")
    step = (0.1 * science_size + 0.5) * PIXEL_SCALE
    return [(a * step, b * step) for a, b in DITHER_PATTERNS[pattern]]


def tiled_plan(ra: float, dec: float, size_deg: float, filters, *, dither: str = "none",
               detectors=DETECTORS, science_size: int = N_PIX_SCIENCE, ma_table: int = DEFAULT_MA_TABLE,
               pa: float = 0.0, overlap: float = 0.1, pointing_error_arcsec: float = 0.0, seed: int = 0,
               name: str = "survey", start_time: str = "2027-06-01T00:00:00", program: int = 1,
               scene: dict | None = None) -> SurveyPlan:
    """A plan tiling a ``size_deg`` square centred on (ra, dec) with WFI pointings.

    Tiles step by the WFI field size less ``overlap``; each tile is observed in
    every filter at each dither position. Exposure ids are ``t<tile>_<filter>_d<dither>``;
    the visit number is the tile, the observation number the filter, the
    exposure number the dither position. Pointing errors are drawn (seeded) with
    ``pointing_error_arcsec`` r.m.s. per axis.
    """
    import numpy as np

    if size_deg <= 0:
        raise RomanflowError(f"--size-deg must be positive, got {size_deg}")
    width, height = wfi_extent_deg()
    step_x, step_y = width * (1 - overlap), height * (1 - overlap)
    nx, ny = max(1, math.ceil(size_deg / step_x - 1e-9)), max(1, math.ceil(size_deg / step_y - 1e-9))
    offsets = dither_offsets(dither, science_size)
    rng = np.random.default_rng([int(seed), 0xD17])
    exposures = []
    cosd = max(math.cos(math.radians(dec)), 1e-6)
    visit = 0
    time = 0.0
    from astropy.time import Time, TimeDelta

    t0 = Time(start_time, scale="utc")
    for j in range(ny):
        for i in range(nx):
            visit += 1
            dx = (i - (nx - 1) / 2.0) * step_x
            dy = (j - (ny - 1) / 2.0) * step_y
            tile_dec = dec + dy
            tile_ra = (ra + dx / cosd) % 360.0
            for f_index, f in enumerate(filters):
                for d_index, (ox, oy) in enumerate(offsets):
                    err = (rng.normal(0, pointing_error_arcsec, 2).tolist() + [0.0]) if pointing_error_arcsec \
                        else [0.0, 0.0, 0.0]
                    exposures.append(ExposurePlan(
                        id=f"t{visit:03d}_{str(f).lower()}_d{d_index + 1}",
                        ra=round(tile_ra, 8), dec=round(tile_dec, 8), pa=float(pa), filter=str(f).upper(),
                        ma_table=int(ma_table), detectors=tuple(str(d).upper() for d in detectors),
                        dither=(round(ox, 4), round(oy, 4)), pointing_error=tuple(round(v, 4) for v in err),
                        seed=int(seed) * 100003 + len(exposures) + 1,
                        ids={"program": program, "pass": 1, "observation": f_index + 1, "visit": visit,
                             "exposure": d_index + 1},
                        start_time=(t0 + TimeDelta(time, format="sec")).isot,
                    ))
                    time += 200.0
    plan = SurveyPlan(name=name, science_size=int(science_size), exposures=exposures,
                      scene=dict(scene or {"seed": int(seed)}))
    check_plan(plan)
    return plan
