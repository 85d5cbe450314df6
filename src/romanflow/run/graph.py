"""The task graph of a survey plan.

::

    scene ─▶ simulate(exposure, detector) ─▶ calibrate ─┐
                                                         ├─▶ register(exposure) ─▶ mosaic(sky cell, filter) ─▶ catalog(sky cell) ─▶ hats
                 (existing L1 files) ─▶ calibrate ──────┘        (one tweakreg join per exposure)
                                                                  every mosaic ─▶ hips (with mosaic.hips)

Tasks carry only file paths and small settings. Which detector lands in which
sky cell (and the cutout of the cell around the data) is worked out when the
graph is built, from the planned pointings or from the input files' metadata,
so the whole graph is known before any work starts.

Output folder layout: ``scene/`` (simulated sky, Gaia-like refcat), ``l1/``,
``truth/``, ``l2/`` (calibrated), ``registered/`` (aligned L2 + point-source
tables), ``l3/`` (``<cell>_<filter>_coadd.asdf``), ``l4/`` (``<cell>_cat.parquet``),
``hats/<name>/``, ``hips/`` (with ``mosaic.hips``: HiPS trees per band and a colour one),
``inject/`` (with ``catalog.injection_n``) and ``ledger/``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from romanflow.errors import RomanflowError
from romanflow.run.plan import SurveyPlan, check_plan, exposure_root

#: Pixels added around the data when the mosaic is a cutout of the sky cell.
DEFAULT_CUTOUT_MARGIN = 40


@dataclass(frozen=True)
class Task:
    """One unit of work: ``kind`` names the function in :data:`romanflow.run.tasks.TASK_FUNCTIONS`."""

    key: str
    kind: str
    params: dict
    deps: tuple = ()
    products: tuple = ()
    detectors: int = 0  #: detector exposures this task completes (for throughput figures)


@dataclass
class TaskGraph:
    """Tasks in an order where every task comes after the tasks it needs."""

    root: Path
    tasks: dict = field(default_factory=dict)

    def add(self, task: Task) -> Task:
        if task.key in self.tasks:
            raise RomanflowError(f"two tasks named {task.key}: the plan repeats an exposure or detector")
        missing = [d for d in task.deps if d not in self.tasks]
        if missing:
            raise RomanflowError(f"task {task.key} needs unknown task(s) {', '.join(missing)}")
        self.tasks[task.key] = task
        return task

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks.values())

    def count(self, kind: str) -> int:
        return sum(t.kind == kind for t in self)

    def check_products(self) -> None:
        """Raise if two tasks would write the same file."""
        owner: dict[str, str] = {}
        clashes = []
        for t in self:
            for p in t.products:
                p = str(Path(p).resolve())
                if p in owner:
                    clashes.append(f"{p} (tasks {owner[p]} and {t.key})")
                owner[p] = t.key
        if clashes:
            raise RomanflowError("overlapping output paths: " + "; ".join(clashes[:5]))


# ------------------------------------------------------------------------------------------ geometry
def _cells_and_outline(wcs_like, shape):
    from romanflow.mosaic.skycells import image_footprint, skycells_touching

    ra, dec = image_footprint(wcs_like, shape)
    return skycells_touching(ra, dec), (np.asarray(ra), np.asarray(dec))


def _cutouts(outlines_per_cell: dict, margin: int) -> dict:
    """Sky cell -> (x0, y0, nx, ny) bounding the outlines of its data, plus a margin (cell pixels)."""
    from romanflow.mosaic.skycells import skycell_wcs

    out = {}
    for cell, outlines in outlines_per_cell.items():
        wcs = skycell_wcs(cell)
        ny, nx = wcs.array_shape
        ra = np.concatenate([o[0] for o in outlines])
        dec = np.concatenate([o[1] for o in outlines])
        x, y = wcs.world_to_pixel_values(ra, dec)
        x0 = max(0, int(math.floor(np.min(x))) - margin)
        y0 = max(0, int(math.floor(np.min(y))) - margin)
        x1 = min(nx, int(math.ceil(np.max(x))) + margin + 1)
        y1 = min(ny, int(math.ceil(np.max(y))) + margin + 1)
        out[cell] = (x0, y0, x1 - x0, y1 - y0)
    return out


# ------------------------------------------------------------------------------------------ inputs
@dataclass
class _Detector:
    """One detector exposure as the graph sees it."""

    exposure: str  #: key joining the detectors of one exposure (tweakreg group)
    name: str  #: file stem ``<root>_wfiNN``
    optical_element: str
    l2_task: str | None  #: task producing the L2 file (None: an input L2 file)
    l2_path: Path
    cells: list
    outline: tuple


def _simulated_detectors(plan: SurveyPlan, root: Path, graph: TaskGraph) -> tuple[list, str]:
    from romanflow import geometry
    from romanflow.run.tasks import detector_disc, scene_tiles
    from romanflow.simulate.render import WING_SIZE

    scene_dir = root / "scene"
    scene_path, gaia_path = scene_dir / "scene.parquet", scene_dir / "gaia.parquet"
    discs, todo = [], []
    for e in plan.exposures:
        commanded = geometry.pointing_for(e.ra, e.dec, e.pa).with_offsets(*e.dither, 0.0)
        true = commanded.with_offsets(*e.pointing_error)
        error_arcsec = math.hypot(e.pointing_error[0], e.pointing_error[1])
        margin = WING_SIZE / 2 * 0.11 + error_arcsec + 2.0
        for det in e.detectors:
            discs.append(detector_disc(det, true, plan.science_size, margin))
            todo.append((e, det, commanded))
    scene = dict(plan.scene)
    graph.add(Task("scene", "scene", dict(tiles=scene_tiles(discs), scene_path=str(scene_path),
                                          gaia_path=str(gaia_path), **scene),
                   products=(str(scene_path), str(gaia_path))))
    detectors = []
    for e, det, commanded in todo:
        name = f"{exposure_root(e)}_{det.lower()}"
        l1 = root / "l1" / f"{name}_uncal.asdf"
        truth = [root / "truth" / f"{name}_{k}" for k in ("sources.parquet", "cosmic_rays.parquet", "rate.npy",
                                                          "wcs.asdf")]
        sim = graph.add(Task(f"simulate-{name}", "simulate",
                             dict(scene_path=str(scene_path), exposure=_exposure_params(e), detector=det,
                                  science_size=plan.science_size, l1_path=str(l1), truth_dir=str(root / "truth")),
                             deps=("scene",), products=(str(l1), *map(str, truth))))
        l2 = root / "l2" / f"{name}_cal.asdf"
        cal = graph.add(Task(f"calibrate-{name}", "calibrate", dict(l1_path=str(l1), l2_dir=str(root / "l2")),
                             deps=(sim.key,), products=(str(l2),), detectors=1))
        proj = geometry.DetectorProjection(det, commanded, plan.science_size)
        cells, outline = _cells_and_outline(proj, (plan.science_size, plan.science_size))
        detectors.append(_Detector(exposure_root(e), name, e.filter, cal.key, l2, cells, outline))
    return detectors, str(gaia_path)


def _exposure_params(e) -> dict:
    from dataclasses import asdict

    return asdict(e)


def _find_files(items) -> list[Path]:
    files = []
    for item in items:
        p = Path(item)
        files.extend(sorted(p.rglob("*.asdf")) if p.is_dir() else [p])
    return files


def _input_detectors(plan: SurveyPlan, root: Path, graph: TaskGraph) -> list:
    """Detectors from existing L1 (calibrated here) and L2 files, read from their metadata only."""
    from romanflow import geometry
    from romanflow.errors import InputFileError
    from romanflow.formats import open_model, to_plain

    files = _find_files(plan.inputs)
    if not files:
        raise RomanflowError(f"no *.asdf files in {', '.join(map(str, plan.inputs))}")
    detectors = []
    for path in files:
        model = open_model(path, ("ScienceRawModel", "ImageModel"))
        with model:
            kind = type(model).__name__
            meta = to_plain(model.meta)
            shape = tuple(model.data.shape[-2:])
            wcs = model.meta["wcs"] if kind == "ImageModel" and "wcs" in model.meta else None
        obs = meta.get("observation") or {}
        inst = meta.get("instrument") or {}
        exposure_key = f"{obs.get('observation_id', path.stem)}_{(meta.get('exposure') or {}).get('start_time', '')}"
        element = str(inst.get("optical_element", "")).upper()
        stem = path.name.removesuffix(".asdf")
        for suffix in ("_uncal", "_cal"):
            stem = stem.removesuffix(suffix)
        if kind == "ScienceRawModel":
            science = shape[0] - 8
            try:
                pointing = geometry.pointing_from_meta(meta)
            except RomanflowError as exc:
                raise InputFileError(path, str(exc)) from None
            proj = geometry.DetectorProjection(inst.get("detector"), pointing, science)
            cells, outline = _cells_and_outline(proj, (science, science))
            l2 = root / "l2" / f"{stem}_cal.asdf"
            cal = graph.add(Task(f"calibrate-{stem}", "calibrate", dict(l1_path=str(path), l2_dir=str(root / "l2")),
                                 products=(str(l2),), detectors=1))
            detectors.append(_Detector(exposure_key, stem, element, cal.key, l2, cells, outline))
        else:
            if wcs is None:
                raise InputFileError(path, "L2 file has no WCS (meta.wcs): it cannot be placed on the sky")
            cells, outline = _cells_and_outline(wcs, shape)
            detectors.append(_Detector(exposure_key, stem, element, None, path, cells, outline))
    return detectors


# ------------------------------------------------------------------------------------------ graph
def build_graph(plan: SurveyPlan, output_dir, *, context=None) -> TaskGraph:
    """Check the plan and lay out every task; nothing is computed or written.

    ``context`` (a reference context file) is the one calibration uses; the embedded store's when None.
    """
    check_plan(plan)
    root = Path(output_dir).resolve()
    graph = TaskGraph(root)
    if plan.simulated:
        detectors, refcat = _simulated_detectors(plan, root, graph)
    else:
        detectors, refcat = _input_detectors(plan, root, graph), plan.refcat

    # one registration join per exposure
    reg = plan.registration
    by_exposure = defaultdict(list)
    for d in detectors:
        by_exposure[d.exposure].append(d)
    aligned: dict[str, tuple[str, Path]] = {}
    for k, (exposure, members) in enumerate(sorted(by_exposure.items())):
        members.sort(key=lambda d: d.name)
        outs = [root / "registered" / f"{d.name}_cal.asdf" for d in members]
        deps = tuple(d.l2_task for d in members if d.l2_task)
        key = f"register-{members[0].name.rsplit('_', 1)[0]}"
        if refcat:
            cats = [root / "registered" / f"{d.name}_cat.parquet" for d in members]
            task = Task(key, "register",
                        dict(l2_paths=[str(d.l2_path) for d in members], refcat_path=str(refcat),
                             out_paths=list(map(str, outs)), catalog_paths=list(map(str, cats)),
                             minobj=int(reg.get("minobj", 10)), snr_threshold=float(reg.get("snr_threshold", 5.0)),
                             searchrad=float(reg.get("searchrad", 3.0)),
                             fitgeometry=str(reg.get("fitgeometry", "rshift"))),
                        deps=deps, products=tuple(map(str, outs + cats)))
        else:
            task = Task(key, "passthrough", dict(l2_paths=[str(d.l2_path) for d in members],
                                                 out_paths=list(map(str, outs))),
                        deps=deps, products=tuple(map(str, outs)))
        graph.add(task)
        for d, out in zip(members, outs):
            aligned[d.name] = (task.key, out)

    # one mosaic per sky cell and filter, on a cutout around the data unless asked otherwise
    members_of = defaultdict(list)
    outlines = defaultdict(list)
    for d in detectors:
        for cell in d.cells:
            members_of[(cell, d.optical_element)].append(d)
            outlines[cell].append(d.outline)
    mos = plan.mosaic
    use_cutout = bool(mos.get("cutout", True))
    cutouts = _cutouts(outlines, int(mos.get("margin_pixels", DEFAULT_CUTOUT_MARGIN))) if use_cutout else {}
    mosaics_of = defaultdict(list)
    for (cell, element), members in sorted(members_of.items()):
        members.sort(key=lambda d: d.name)
        out = root / "l3" / f"{cell}_{element.lower()}_coadd.asdf"
        paths = [str(aligned[d.name][1]) for d in members]
        deps = tuple(sorted({aligned[d.name][0] for d in members}))
        task = graph.add(Task(f"mosaic-{cell}-{element.lower()}", "mosaic",
                              dict(members=paths, skycell=cell, optical_element=element, out_path=str(out),
                                   cutout=cutouts.get(cell), outliers=bool(mos.get("outliers", True))),
                              deps=deps, products=(str(out),)))
        mosaics_of[cell].append((element, task.key, str(out)))

    # HiPS trees of every mosaic (mosaic.hips): one task, as the cells share tiles; a cell already in
    # the trees replaces its earlier contribution and only the tiles the mosaics touch are rewritten
    if bool(mos.get("hips", False)) and mosaics_of:
        items = [(key, path) for cell in sorted(mosaics_of) for _, key, path in sorted(mosaics_of[cell])]
        hips_dir = root / "hips"
        graph.add(Task("hips", "hips", dict(mosaic_paths=[p for _, p in items], out_dir=str(hips_dir)),
                       deps=tuple(k for k, _ in items), products=(str(hips_dir),)))

    # one catalog per sky cell, then one HATS catalog of them all
    cat = plan.catalog
    catalogs = []
    for cell, items in sorted(mosaics_of.items()):
        items.sort()
        out = root / "l4" / f"{cell}_cat.parquet"
        task = graph.add(Task(f"catalog-{cell}", "catalog",
                              dict(mosaic_paths=[p for _, _, p in items], out_path=str(out),
                                   snr_threshold=float(cat.get("snr_threshold", 5.0)),
                                   n_pixels=int(cat.get("n_pixels", 5)), deblend=bool(cat.get("deblend", True)),
                                   psf_photometry=bool(cat.get("psf_photometry", True))),
                              deps=tuple(k for _, k, _ in items), products=(str(out),)))
        catalogs.append((cell, task.key, str(out)))
    if catalogs:
        hats_dir = root / "hats" / plan.name
        graph.add(Task("hats", "hats", dict(catalog_paths=[p for _, _, p in catalogs],
                                            skycells=[c for c, _, _ in catalogs], out_dir=str(hats_dir),
                                            name=plan.name),
                       deps=tuple(k for _, k, _ in catalogs), products=(str(hats_dir),)))
    # source injection per sky cell (catalog.injection_n > 0), then one depth map of the survey
    n_inject = int(cat.get("injection_n", 0))
    injections = []
    for cell, key, path in catalogs if n_inject > 0 else []:
        mosaics = [p for _, _, p in sorted(mosaics_of[cell])]
        folder = root / "inject" / cell
        outputs = (str(folder / f"{cell}_injection_output.parquet"),)
        task = graph.add(Task(f"inject-{cell}", "inject",
                              dict(mosaic_paths=mosaics, catalog_path=path, out_dir=str(folder), cell=cell,
                                   n=n_inject, mag_range=(float(cat.get("injection_mag_min", 20.0)),
                                                          float(cat.get("injection_mag_max", 28.0))),
                                   star_fraction=float(cat.get("injection_star_fraction", 0.5)),
                                   seed=int(cat.get("injection_seed", 0)),
                                   snr_threshold=float(cat.get("snr_threshold", 5.0)),
                                   n_pixels=int(cat.get("n_pixels", 5)), deblend=bool(cat.get("deblend", True))),
                              deps=(key,), products=outputs))
        injections.append((task.key, outputs[0]))
    if injections:
        graph.add(Task("depth-map", "depth_map",
                       dict(output_paths=[p for _, p in injections], out_dir=str(root / "inject"), name=plan.name),
                       deps=tuple(k for k, _ in injections),
                       products=(str(root / "inject" / f"{plan.name}_depth_map.png"),)))
    graph.check_products()
    if context is not None:
        for task in graph:
            if task.kind == "calibrate":
                task.params["context"] = str(Path(context).resolve())
    return graph


def product_stem(path) -> str:
    """A product's file name without its extension (``l2/x_cal.asdf`` -> ``x_cal``)."""
    name = Path(path).name
    for ext in (".asdf", ".parquet", ".json"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def tasks_producing(graph: TaskGraph, stems, kinds=None) -> set:
    """Keys of the tasks (of ``kinds``, any if None) writing a product whose stem is in ``stems``."""
    stems = set(stems)
    return {t.key for t in graph if (kinds is None or t.kind in kinds)
            and any(product_stem(p) in stems for p in t.products)}


def downstream_tasks(graph: TaskGraph, keys) -> set:
    """``keys`` and every task that needs one of them, directly or not."""
    out = set(keys)
    for task in graph:  # tasks come after the tasks they need
        if any(d in out for d in task.deps):
            out.add(task.key)
    return out
