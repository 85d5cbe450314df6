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
from romanflow.errors import InputFileError, ParameterError, RomanflowError

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
#: Plan sections that are mappings, and the value types of their known keys.
SECTION_KEYS = {
    "scene": {"density_per_arcmin2": "positive", "star_fraction": "fraction", "seed": "int",
              "faint_limit": "finite", "refcat_g_limit": "finite"},
    "registration": {"minobj": "count", "snr_threshold": "positive", "searchrad": "positive", "fitgeometry": "str"},
    "mosaic": {"cutout": "bool", "margin_pixels": "natural", "outliers": "bool", "hips": "bool"},
    "catalog": {"snr_threshold": "positive", "n_pixels": "count", "deblend": "bool", "psf_photometry": "bool",
                "injection_n": "natural", "injection_mag_min": "finite", "injection_mag_max": "finite",
                "injection_star_fraction": "fraction", "injection_seed": "int"},
}
_KIND_TEXT = {"positive": "a finite number > 0", "fraction": "a number from 0 to 1", "int": "an integer",
              "finite": "a finite number", "count": "an integer >= 1", "natural": "an integer >= 0",
              "str": "a text", "bool": "true or false"}


def plan_error(source, problem: str) -> RomanflowError:
    """The error for a problem of a plan: an InputFileError naming its file, when it was read from one."""
    return InputFileError(source, problem) if source else RomanflowError(f"plan: {problem}")


def _is_utc_time(text: str) -> bool:
    """Whether astropy reads ``text`` as a time (ISO/ISOT, UTC)."""
    import warnings

    from astropy.time import Time

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Time(text, scale="utc")
    except (ValueError, TypeError):
        return False
    return True


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_problem(value, kind: str) -> str | None:
    """Why ``value`` is not of ``kind`` (a key of :data:`_KIND_TEXT`), or None when it is."""
    ok = {
        "positive": lambda v: _is_number(v) and math.isfinite(v) and v > 0,
        "fraction": lambda v: _is_number(v) and 0 <= v <= 1,
        "int": _is_int,
        "finite": lambda v: _is_number(v) and math.isfinite(v),
        "count": lambda v: _is_int(v) and v >= 1,
        "natural": lambda v: _is_int(v) and v >= 0,
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
    }[kind](value)
    return None if ok else f"expected {_KIND_TEXT[kind]}, got {value!r}"


def _numbers(value, n: int, key: str, where: str, problems: list) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != n or not all(
            _is_number(v) and math.isfinite(v) for v in value):
        problems.append(f"{where}.{key}: expected a list of {n} finite numbers, got {value!r}")
        return (0.0,) * n
    return tuple(float(v) for v in value)


def _exposure_from_dict(item, k: int, problems: list) -> ExposurePlan | None:
    where = f"exposures[{k}]"
    if not isinstance(item, dict):
        problems.append(f"{where}: expected a mapping, got {item!r}")
        return None
    before = len(problems)
    pointing = item.get("pointing")
    if not isinstance(pointing, dict):
        problems.append(f"{where}.pointing: expected a mapping with ra, dec (and pa), got {pointing!r}")
        pointing = {}
    for key in ("ra", "dec"):
        if key not in pointing and item.get("pointing") is not None:
            problems.append(f"{where}: missing 'pointing.{key}'")
    coords = {}
    for key in ("ra", "dec", "pa"):
        value = pointing.get(key, 0.0)
        problem = value_problem(value, "finite")
        if problem:
            problems.append(f"{where}.pointing.{key}: {problem}")
        coords[key] = float(value) if not problem else 0.0
    if "filter" not in item:
        problems.append(f"{where}: missing 'filter'")
    elif not isinstance(item["filter"], str):
        problems.append(f"{where}.filter: expected a filter name such as F158, got {item['filter']!r}")
    detectors = item.get("detectors") or ["WFI01"]
    if isinstance(detectors, str):
        detectors = [detectors]
    if not isinstance(detectors, list) or not all(isinstance(d, str) for d in detectors):
        problems.append(f"{where}.detectors: expected a list of detector names, got {detectors!r}")
        detectors = []
    for key in ("ma_table", "seed"):
        if key in item and not _is_int(item[key]):
            problems.append(f"{where}.{key}: expected an integer, got {item[key]!r}")
    if _is_int(item.get("seed", 0)) and item.get("seed", 0) < 0:
        problems.append(f"{where}.seed: expected an integer >= 0, got {item['seed']!r}")
    ids = item.get("ids") or {}
    if not isinstance(ids, dict) or not all(_is_int(v) and v >= 0 for v in ids.values()):
        problems.append(f"{where}.ids: expected a mapping of non-negative integers, got {ids!r}")
        ids = {}
    start_time = item.get("start_time", "2027-06-01T00:00:00")
    if not isinstance(start_time, str) or not _is_utc_time(start_time):
        problems.append(f"{where}.start_time: expected a UTC time such as 2027-06-01T00:00:00, got {start_time!r}")
    dither = _numbers(item.get("dither", (0.0, 0.0)), 2, "dither", where, problems)
    pointing_error = _numbers(item.get("pointing_error", (0.0, 0.0, 0.0)), 3, "pointing_error", where, problems)
    if len(problems) > before:
        return None
    return ExposurePlan(
        id=str(item.get("id", f"e{k + 1:04d}")), ra=coords["ra"], dec=coords["dec"], pa=coords["pa"],
        filter=item["filter"].upper(), ma_table=int(item.get("ma_table", DEFAULT_MA_TABLE)),
        detectors=tuple(d.upper() for d in detectors), dither=dither, pointing_error=pointing_error,
        seed=int(item.get("seed", 0)), ids=dict(ids), start_time=start_time,
    )


def plan_from_dict(data: dict, base: Path | None = None, source: str | None = None) -> SurveyPlan:
    """Build a plan from its YAML mapping, checking the type of every value (the rest: :func:`check_plan`).

    Raises an InputFileError naming ``source`` (the plan file) and every key of the wrong type.
    """
    if not isinstance(data, dict):
        raise plan_error(source, "a plan is a YAML mapping with 'exposures' or 'inputs'")
    known = {"name", "science_size", "exposures", "scene", "inputs", "refcat", "registration", "mosaic", "catalog"}
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        raise plan_error(source, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    problems: list[str] = []
    name = data.get("name", "survey")
    if not isinstance(name, (str, int)) or isinstance(name, bool) or not str(name):
        problems.append(f"name: expected a text, got {name!r}")
    science_size = data.get("science_size", N_PIX_SCIENCE)
    if not _is_int(science_size):
        problems.append(f"science_size: expected an integer number of pixels, got {science_size!r}")
        science_size = N_PIX_SCIENCE
    raw_exposures = data.get("exposures")
    if raw_exposures is not None and not isinstance(raw_exposures, list):
        problems.append(f"exposures: expected a list of exposures, got {raw_exposures!r}")
        raw_exposures = None
    exposures = [_exposure_from_dict(item, k, problems) for k, item in enumerate(raw_exposures or [])]
    inputs = data.get("inputs")
    if isinstance(inputs, str):
        inputs = [inputs]
    if inputs is not None and not (isinstance(inputs, list) and all(isinstance(p, str) and p for p in inputs)):
        problems.append(f"inputs: expected a list of files or folders, got {inputs!r}")
        inputs = None
    refcat = data.get("refcat")
    if refcat is not None and not (isinstance(refcat, str) and refcat):
        problems.append(f"refcat: expected a file name, got {refcat!r}")
        refcat = None
    sections = {}
    for section, kinds in SECTION_KEYS.items():
        value = data.get(section)
        if value is None:
            sections[section] = {}
            continue
        if not isinstance(value, dict):
            problems.append(f"{section}: expected a mapping, got {value!r}")
            sections[section] = {}
            continue
        for key, item in value.items():
            if key not in kinds:
                problems.append(f"{section}: unknown key {key!r} (known: {', '.join(kinds)})")
            elif (problem := value_problem(item, kinds[key])) is not None:
                problems.append(f"{section}.{key}: {problem}")
        sections[section] = dict(value)
    if problems:
        raise plan_error(source, "; ".join(problems))

    def resolve(p):
        p = Path(str(p)).expanduser()
        return p if p.is_absolute() or base is None else base / p

    return SurveyPlan(
        name=str(name),
        science_size=int(science_size),
        exposures=exposures,
        scene=sections["scene"],
        inputs=[resolve(p) for p in (inputs or [])],
        refcat=str(resolve(refcat)) if refcat else None,
        registration=sections["registration"],
        mosaic=sections["mosaic"],
        catalog=sections["catalog"],
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
    """Raise a RomanflowError (an InputFileError naming the plan file) listing every problem of the plan."""
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
        if not (math.isfinite(e.ra) and math.isfinite(e.pa)):
            problems.append(f"{label}: ra and pa must be finite")
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
    for section, kinds in SECTION_KEYS.items():
        for key, value in (getattr(plan, section) or {}).items():
            if key not in kinds:
                problems.append(f"{section}: unknown key {key!r}")
            elif (problem := value_problem(value, kinds[key])) is not None:
                problems.append(f"{section}.{key}: {problem}")
    if problems:
        raise plan_error(plan.source, "; ".join(problems))


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

    for parameter, value, kind in (("ra", ra, "finite"), ("pa", pa, "finite"), ("size_deg", size_deg, "positive")):
        if (problem := value_problem(value, kind)) is not None:
            raise ParameterError(parameter, value, problem.split(",")[0])
    if not (_is_number(dec) and -90.0 <= dec <= 90.0):
        raise ParameterError("dec", dec, "expected degrees from -90 to 90")
    if not (_is_number(pointing_error_arcsec) and math.isfinite(pointing_error_arcsec) and pointing_error_arcsec >= 0):
        raise ParameterError("pointing_error_arcsec", pointing_error_arcsec, "expected a finite number >= 0")
    if not (0.0 <= overlap < 1.0):
        raise ParameterError("overlap", overlap, "expected a fraction in [0, 1)")
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
