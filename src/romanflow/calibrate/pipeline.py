"""The exposure-level pipeline: one detector's L1 ramps -> L2 rate image.

dq_init -> saturation -> refpix -> dark_decay -> wfi18_transient -> linearity -> [per-resultant dark] -> ramp_fit
-> dark -> assign_wcs -> flat_field -> photom

Reference files are resolved once, before any step runs (explicit overrides
win over the context's rules), so a missing or wrong file stops the run before
work is done. Each step is a function on the in-memory exposure; this module
only chains them, times them and records provenance.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from romanflow.version import __version__
from romanflow.calibrate.assign_wcs import assign_wcs
from romanflow.calibrate.dark import dark_rate_step, dark_resultant_step
from romanflow.calibrate.dark_decay import dark_decay
from romanflow.calibrate.dq_init import dq_init
from romanflow.calibrate.flat import flat_field
from romanflow.calibrate.inputs import check_ramp_exposure, check_ramp_method, check_reference_frame
from romanflow.calibrate.linearity import linearity
from romanflow.calibrate.photom import photom
from romanflow.calibrate.ramp_fit import ramp_fit
from romanflow.calibrate.refpix import refpix
from romanflow.calibrate.saturation import saturation
from romanflow.calibrate.wfi18_transient import wfi18_transient
from romanflow.provenance import SKIPPED, mark_step, record_reference
from romanflow.errors import OutputExistsError, ParameterError, RomanflowError
from romanflow.exposure import RampExposure, RateImage
from romanflow.kernels.ramp import DEFAULT_METHOD

#: Steps in the order they run.
STEPS = ("dq_init", "saturation", "refpix", "dark_decay", "wfi18_transient", "linearity", "ramp_fit", "dark",
         "assign_wcs", "flat_field", "photom")

#: Reference types each step reads.
STEP_REFTYPES = {
    "dq_init": ("mask",),
    "saturation": ("saturation",),
    "refpix": ("refpix",),
    "dark_decay": ("darkdecaysignal",),
    "linearity": ("linearity",),
    "ramp_fit": ("readnoise", "gain"),
    "dark": ("dark",),
    "assign_wcs": ("distortion",),
    "flat_field": ("flat",),
    "photom": ("photom",),
}

#: Steps whose output defines the product; they cannot be skipped.
REQUIRED_STEPS = ("ramp_fit",)


@dataclass
class CalibrationOptions:
    """How to calibrate.

    Attributes
    ----------
    skip : tuple of str
        Steps not to run (recorded as SKIPPED).
    overrides : dict
        reftype -> file path that replaces the context's choice (``'N/A'`` switches the type off).
    ramp_method : {'likely', 'casertano'}
        Ramp-fitting algorithm.
    detect_jumps : bool
        Look for cosmic-ray jumps while fitting.
    context : optional
        Reference context (a context file or a store); the embedded default store if None.
    """

    skip: tuple = ()
    overrides: dict = field(default_factory=dict)
    ramp_method: str = DEFAULT_METHOD
    detect_jumps: bool = True
    context: object = None

    def __post_init__(self):
        unknown = sorted(set(self.skip) - set(STEPS))
        if unknown:
            raise ParameterError("skip", tuple(self.skip), f"unknown step(s) {', '.join(unknown)}; steps are "
                                                           f"{', '.join(STEPS)}")
        required = sorted(set(self.skip) & set(REQUIRED_STEPS))
        if required:
            raise ParameterError("skip", tuple(self.skip), f"step(s) {', '.join(required)} cannot be skipped: "
                                                           "they produce the rate image")
        check_ramp_method(self.ramp_method)
        self.skip = tuple(self.skip)
        self.overrides = {str(k).lower(): v for k, v in (self.overrides or {}).items()}


def resolve_references(meta: dict, science_size: int, options: CalibrationOptions) -> dict:
    """reftype -> Path (or None when not applicable) for every step that will run."""
    from romanflow.refdata import default_store, select_reference

    context = options.context if options.context is not None else default_store(science_size)
    chosen = {}
    for step in STEPS:
        if step in options.skip:
            continue
        for reftype in STEP_REFTYPES.get(step, ()):
            chosen[reftype] = select_reference(reftype, meta, context, options.overrides)
    return chosen


def _load(references: dict, reftype: str):
    from romanflow.formats.reference_io import read_reference

    path = references.get(reftype)
    return None if path is None else read_reference(path, reftype)


class _ReferenceLoader:
    """Reference contents for the steps, the next step's files read ahead in one background thread.

    Reading a reference (decompression, copies) is mostly single-threaded, so
    reading the next step's files while the current step runs uses the idle
    core. A file is held only from its read-ahead until its step has taken it.
    Each reference is checked against the exposure's frame shape (ny, nx) when
    a step takes it.
    """

    def __init__(self, references: dict, frame_shape):
        from concurrent.futures import ThreadPoolExecutor

        self.references = references
        self.frame_shape = tuple(frame_shape)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="romanflow-refs")
        self._pending: dict = {}

    def read_ahead(self, *reftypes) -> None:
        for reftype in reftypes:
            if reftype not in self._pending and self.references.get(reftype) is not None:
                self._pending[reftype] = self._pool.submit(_load, self.references, reftype)

    def get(self, reftype: str):
        pending = self._pending.pop(reftype, None)
        reference = pending.result() if pending is not None else _load(self.references, reftype)
        if reference is not None:
            check_reference_frame(reference, self.frame_shape)
        return reference

    def close(self) -> None:
        for pending in self._pending.values():
            pending.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)


def _dark_is_per_resultant(path) -> bool:
    """Whether a DARK file carries a per-resultant 3-D ``data`` cube (read lazily, no array loaded)."""
    from romanflow.formats.reference_io import open_quietly

    if path is None:
        return False
    with open_quietly(path, "DarkRefModel") as model:
        return "data" in model and len(getattr(getattr(model, "data"), "shape", ())) == 3


def _run_steps(exposure: RampExposure, options: CalibrationOptions, references: dict, loader: _ReferenceLoader,
               timings: dict) -> RateImage:
    """The steps in order, each step's references read ahead while the step before it runs."""
    meta = exposure.meta

    def run(step, func):
        if step in options.skip:
            mark_step(meta, step, SKIPPED)
            timings[step] = 0.0
            return None
        start = time.perf_counter()
        result = func()
        timings[step] = time.perf_counter() - start
        for reftype in STEP_REFTYPES.get(step, ()):
            record_reference(meta, reftype, references.get(reftype))
        return result

    def wanted(step):
        return () if step in options.skip else STEP_REFTYPES.get(step, ())

    def with_reference(reftype, step_function, target, *members):
        """A step call on ``target`` with members of its reference (nothing when the type is N/A)."""
        def call():
            ref = loader.get(reftype)
            if ref is not None:
                step_function(target, *(ref[name] for name in members))
        return call

    # The dark is read before the fit only if it is a per-resultant cube; a dark rate is read after the
    # fit, so it is not held in memory while the ramps are fitted.
    per_resultant_dark = "dark" not in options.skip and _dark_is_per_resultant(references.get("dark"))
    loader.read_ahead(*wanted("dq_init"), *wanted("saturation"))

    def load_mask():
        ref = loader.get("mask")
        return dq_init(exposure, None if ref is None else ref["dq"])

    run("dq_init", load_mask)
    if "dq_init" in options.skip:  # still need a float ramp and flag arrays
        dq_init(exposure, None)
        mark_step(meta, "dq_init", SKIPPED)

    loader.read_ahead(*wanted("linearity"))
    run("saturation", with_reference("saturation", saturation, exposure, "data", "dq"))
    loader.read_ahead(*wanted("refpix"), *wanted("dark_decay"))
    def do_refpix():
        reference = loader.get("refpix")
        decay = None
        if reference is not None and "dark_decay" not in options.skip:  # the columns' own decay is known
            decay_reference = _load(references, "darkdecaysignal")
            decay = None if decay_reference is None else decay_reference["decay_table"]
        return refpix(exposure, reference, decay)

    run("refpix", do_refpix)
    run("dark_decay", with_reference("darkdecaysignal", dark_decay, exposure, "decay_table"))
    run("wfi18_transient", lambda: wfi18_transient(exposure))

    loader.read_ahead(*wanted("ramp_fit"))
    run("linearity", with_reference("linearity", linearity, exposure, "coeffs", "dq"))

    if per_resultant_dark:
        start = time.perf_counter()
        dark_resultant_step(exposure, loader.get("dark")["data"])
        timings["dark"] = time.perf_counter() - start

    def do_ramp_fit():
        rn, gain = loader.get("readnoise"), loader.get("gain")
        if rn is None or gain is None:
            raise RomanflowError("ramp fitting needs both a readnoise and a gain reference")
        return ramp_fit(exposure, rn["data"], gain["data"], method=options.ramp_method,
                        detect_jumps=options.detect_jumps)

    image = run("ramp_fit", do_ramp_fit)

    if not per_resultant_dark:
        loader.read_ahead(*wanted("assign_wcs"))
        run("dark", with_reference("dark", dark_rate_step, image, "dark_slope", "dq"))
    loader.read_ahead(*wanted("flat_field"))
    run("assign_wcs", lambda: assign_wcs(image, loader.get("distortion")))

    loader.read_ahead(*wanted("photom"))
    run("flat_field", with_reference("flat", flat_field, image, "data", "err", "dq"))
    run("photom", with_reference("photom", photom, image, "phot_table"))
    return image


def calibrate_exposure(exposure: RampExposure, options: CalibrationOptions | None = None,
                       references: dict | None = None) -> tuple[RateImage, dict]:
    """Calibrate one detector's ramp into a rate image.

    Parameters
    ----------
    exposure : RampExposure
        L1 resultants (uint16 DN) and metadata; modified in place.
    options : CalibrationOptions, optional
        Steps to skip, overrides, ramp method.
    references : dict, optional
        reftype -> path, already resolved (see :func:`resolve_references`).

    Returns
    -------
    image : RateImage
        The L2 rate image (DN/s).
    timings : dict
        Seconds per step, plus ``'total'``.
    """
    options = options or CalibrationOptions()
    check_ramp_exposure(exposure)
    meta = exposure.meta
    science_size = exposure.science_size
    if references is None:
        references = resolve_references(meta, science_size, options)
    timings: dict[str, float] = {}
    start_all = time.perf_counter()
    loader = _ReferenceLoader(references, exposure.data.shape[1:])
    try:
        image = _run_steps(exposure, options, references, loader, timings)
    finally:
        loader.close()
    timings["total"] = time.perf_counter() - start_all
    meta["calibration_software_name"] = "romanflow"
    meta["calibration_software_version"] = __version__
    meta["model_type"] = "ImageModel"
    meta.setdefault("cal_logs", []).extend(f"{step}: {seconds:.2f} s" for step, seconds in timings.items())
    return image, timings


def output_name(path: Path) -> str:
    """``r..._wfi07_uncal.asdf`` -> ``r..._wfi07_cal.asdf``."""
    stem = path.name.removesuffix(".asdf").removesuffix("_uncal")
    return f"{stem}_cal.asdf"


def calibrate_file(path, output_dir=None, options: CalibrationOptions | None = None, *,
                   overwrite: bool = True) -> tuple[Path, dict]:
    """Read an L1 file, calibrate it and write the L2 file; returns (output path, timings).

    ``overwrite`` (default True: a task rerun rewrites its product) False refuses an
    existing output before any work.
    """
    from romanflow.formats import check_output_path, read_l1, write_l2

    path = Path(path)
    options = options or CalibrationOptions()
    out = Path(output_dir) if output_dir is not None else path.parent
    target = out / output_name(path)
    check_output_path(target, overwrite=overwrite)
    start = time.perf_counter()
    exposure = read_l1(path)
    read_time = time.perf_counter() - start
    references = resolve_references(exposure.meta, exposure.science_size, options)
    image, timings = calibrate_exposure(exposure, options, references)
    start = time.perf_counter()
    write_l2(image, target)
    timings = {"read": read_time, **timings, "write": time.perf_counter() - start}
    return target, timings


def output_paths(inputs, output_dir=None) -> list[Path]:
    """The L2 path each L1 input is calibrated into (``output_dir``, or beside the input)."""
    return [(Path(output_dir) if output_dir is not None else Path(p).parent) / output_name(Path(p)) for p in inputs]


def check_calibration_request(paths, output_dir=None, options: CalibrationOptions | None = None, *,
                              overwrite: bool = False) -> list[Path]:
    """Everything checked before any calibration work; returns the output paths in input order.

    Every input is a readable L1 file (metadata, MA table, shapes); no two inputs give
    the same output; no output replaces an input, a folder, or (unless ``overwrite``)
    an existing file; the output folders can be written; every reference override is
    used by a step that runs and holds that type of reference; a context file exists.

    Raises
    ------
    InputFileError, ParameterError, OutputExistsError, OSError
        Naming the file or parameter.
    """
    from romanflow.calibrate.inputs import check_overrides
    from romanflow.errors import InputFileError
    from romanflow.formats import check_l1, check_output_path, check_product_name

    options = options or CalibrationOptions()
    paths = [Path(p) for p in paths]
    if not paths:
        raise ParameterError("inputs", [], "no L1 file given")
    for p in paths:
        check_l1(p)
    targets = output_paths(paths, output_dir)
    seen: dict[str, Path] = {}
    for p, target in zip(paths, targets):
        key = os.path.normcase(os.path.abspath(target))
        if key in seen:
            first = seen[key]
            if os.path.abspath(first) == os.path.abspath(p):
                raise InputFileError(p, f"is given twice (both would be calibrated into {target})")
            raise ParameterError("inputs", [str(first), str(p)], f"both would be calibrated into {target}: "
                                 "rename one, or calibrate them into different folders")
        seen[key] = p
    inputs = {os.path.realpath(p) for p in paths}
    for p, target in zip(paths, targets):
        if os.path.realpath(target) in inputs:
            raise OutputExistsError(target, f"is an input: calibrating {p} would replace it")
        check_product_name(target)
        check_output_path(target, overwrite=overwrite)
    used = {t for step in STEPS if step not in options.skip for t in STEP_REFTYPES.get(step, ())}
    skipped = {t for step in options.skip for t in STEP_REFTYPES.get(step, ())} - used
    check_overrides(options.overrides, used | skipped, skipped)
    if isinstance(options.context, (str, os.PathLike)) and not Path(options.context).is_file():
        raise InputFileError(options.context, "reference context file not found")
    return targets


def _watch_parent(parent_pid: int) -> None:
    """Exit this process as soon as the process ``parent_pid`` is gone (polled every 0.5 s)."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(0.5)


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker process end when its parent ends, even by SIGKILL.

    Linux: the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``).
    Everywhere: a daemon thread also polls the parent's pid.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="romanflow-parent-watch", daemon=True).start()


def _init_worker(threads: int, parent_pid: int | None = None) -> None:
    import numba

    if parent_pid is not None:
        _die_with_parent(parent_pid)
    numba.set_num_threads(max(1, threads))


def _failure_error(failures: list, n_inputs: int) -> RomanflowError:
    """One error for the inputs that failed (the first one's own error when only one did)."""
    if len(failures) == 1:
        return failures[0][1]
    messages = list(dict.fromkeys(str(exc) for _, exc in failures))
    shown = "; ".join(messages[:3]) + (f"; and {len(messages) - 3} more" if len(messages) > 3 else "")
    return RomanflowError(f"{len(failures)} of {n_inputs} inputs not calibrated: {shown}")


def calibrate(inputs, output_dir=None, *, options: CalibrationOptions | None = None, workers: int | None = None,
              progress=None, overwrite: bool = False) -> list[Path]:
    """Calibrate several L1 files; returns the L2 paths in input order.

    Everything that can be checked without calibrating (:func:`check_calibration_request`)
    is checked first, for every input, so a bad request stops before any work. When an
    input fails during calibration (a damaged array block, a worker process lost), the
    other inputs are still calibrated and their outputs kept (each reported to
    ``progress``), then the failure is raised naming the input.

    Parameters
    ----------
    inputs : path or sequence of paths
        L1 files.
    output_dir : path, optional
        Where to write the L2 files (default: beside each input).
    options : CalibrationOptions, optional
        Steps to skip, reference overrides, ramp method.
    workers : int, optional
        Processes to use (default: one per core, at most one per file). Worker
        processes end with the calling process, even when it is killed.
    progress : callable, optional
        Called with each finished output path (e.g. to advance a progress bar).
    overwrite : bool
        Replace existing output files (default False: an existing output is refused
        before any work).

    Raises
    ------
    RomanflowError
        A bad request (before any work), or the input(s) that failed.
    """
    paths = [Path(p) for p in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
    options = options or CalibrationOptions()
    check_calibration_request(paths, output_dir, options, overwrite=overwrite)
    workers = min(len(paths), workers or os.cpu_count() or 1)
    results: dict[int, Path] = {}
    failures: list = []
    if workers <= 1:
        for i, p in enumerate(paths):
            try:
                results[i] = calibrate_file(p, output_dir, options, overwrite=overwrite)[0]
            except RomanflowError as exc:
                failures.append((i, exc))
                continue
            if progress:
                progress(results[i])
    else:
        _calibrate_in_processes(paths, output_dir, options, workers, overwrite, results, failures, progress)
    if failures:
        raise _failure_error(sorted(failures, key=lambda f: f[0]), len(paths))
    return [results[i] for i in range(len(paths))]


@contextlib.contextmanager
def _main_script_not_rerun():
    """Start spawned workers without re-running the caller's script in each of them.

    A spawned process imports the parent's ``__main__`` by path (or module name) before it
    unpickles its task; a script without an ``if __name__ == "__main__":`` guard would then
    simulate or calibrate again in every worker. The workers only need romanflow, so the main
    module's path and spec are hidden while they start.
    """
    main = sys.modules.get("__main__")
    saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if main and name in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def _calibrate_in_processes(paths, output_dir, options, workers, overwrite, results, failures, progress) -> None:
    """Calibrate ``paths`` in a pool of spawned processes; fill ``results`` and ``failures`` by input index."""
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    from romanflow.errors import InputFileError

    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, os.getpid()))
    try:
        with _main_script_not_rerun():
            futures = {pool.submit(calibrate_file, p, output_dir, options, overwrite=overwrite): i
                       for i, p in enumerate(paths)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()[0]
            except RomanflowError as exc:
                failures.append((i, exc))
                continue
            except BrokenProcessPool:
                failures.append((i, InputFileError(paths[i], "its calibration process ended unexpectedly "
                                                             "(out of memory?)")))
                continue
            if progress:
                progress(results[i])
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        raise
    pool.shutdown(wait=True)
