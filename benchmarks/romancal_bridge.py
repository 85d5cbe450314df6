"""Run romancal's ExposurePipeline on romanflow's L1 and reference files, offline.

This script is executed by *another* Python, one with romancal installed (its
own roman_datamodels version), by :mod:`benchmarks.calibrate`. It does not
import romanflow. One job per process, given as a JSON argument::

    python benchmarks/romancal_bridge.py '{"kind": "l1", ...}'

Jobs
----
``l1``
    ``{"npz": arrays (data, amp33, ...), "meta": JSON metadata, "out": path}``:
    build a ScienceRawModel of this roman_datamodels version (fake-data
    defaults, overlaid with every metadata value its schema knows) and save it.
``check_refs``
    ``{"refs": {reftype: path}}``: open and validate each reference file with
    this roman_datamodels; reports which can be used as they are.
``ref``
    ``{"reftype", "model", "npz", "meta", "objects_asdf", "out"}``: rebuild a
    reference file of this version from its arrays, metadata and (for the
    distortion and photom types) objects stored in a plain ASDF file.
``run``
    ``{"l1", "refs", "algorithm", "skip", "out_dir", "save"}``: run the
    ExposurePipeline with every reference file given as an override, time each
    step, save the rate image's arrays (data, err, dq) to ``.npz``.

CRDS is never contacted: every reference type the steps ask for is
overridden (a file or ``N/A``), prefetching is off, the CRDS look-ups stpipe
would still make are replaced by functions that fail loudly, and the context
name recorded in the product is set to ``offline``. The parent sets
``CRDS_SERVER_URL`` to a dead local address and ``CRDS_MODE=local``.

Each job prints one line ``RESULT <json>`` with its figures, including the
process's peak resident memory (GiB).
"""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings

#: The pipeline's step attributes, in the order they run.
PIPELINE_STEPS = ("dq_init", "saturation", "refpix", "dark_decay", "wfi18_transient", "linearity", "rampfit",
                  "dark_current", "assign_wcs", "photom", "flatfield", "source_catalog", "tweakreg")

#: Step attribute -> reference types it reads.
STEP_REFTYPES = {
    "dq_init": ("mask",),
    "saturation": ("saturation",),
    "refpix": ("refpix",),
    "dark_decay": ("darkdecaysignal",),
    "linearity": ("linearity", "inverselinearity", "integralnonlinearity"),
    "rampfit": ("readnoise", "gain"),
    "dark_current": ("dark",),
    "assign_wcs": ("distortion",),
    "flatfield": ("flat",),
    "photom": ("photom",),
    "source_catalog": ("apcorr",),
}


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def overlay_meta(node, values) -> int:
    """Copy the values of a plain metadata tree onto a model's metadata node; returns how many were set.

    Only keys the node already has (i.e. the schema knows) are set, converted to
    the type of the node's current value (times from ISO strings).
    """
    from astropy.time import Time

    count = 0
    for key, value in values.items():
        if key not in node or value is None:
            continue
        current = node[key]
        if hasattr(current, "keys") and isinstance(value, dict):
            count += overlay_meta(current, value)
            continue
        if isinstance(current, Time):
            value = Time(value, format="isot", scale="utc")
        elif isinstance(current, bool):
            value = bool(value)
        elif isinstance(current, int):
            value = int(value)
        elif isinstance(current, float):
            value = float(value)
        elif isinstance(current, str):
            value = str(value)
        elif isinstance(current, (list, tuple)) or type(current).__name__ == "LNode":
            value = list(value)
        else:
            continue
        node[key] = value
        count += 1
    return count


def job_l1(job: dict) -> dict:
    import numpy as np
    import roman_datamodels.datamodels as rdm

    arrays = np.load(job["npz"])
    meta = json.load(open(job["meta"]))
    data = arrays["data"]
    model = rdm.ScienceRawModel.create_fake_data(shape=(1, 8, 8))
    n_meta = overlay_meta(model.meta, meta)
    model.meta.filename = job["out"].rsplit("/", 1)[-1]
    model.data = data
    model.amp33 = arrays["amp33"]
    for name in ("resultantdq", "reference_read", "reference_amp33"):
        if name in arrays.files:
            model[name] = arrays[name]
    model.validate()
    model.save(job["out"])
    return {"out": job["out"], "meta_values_set": n_meta, "tag": model.tag}


def job_check_refs(job: dict) -> dict:
    import roman_datamodels.datamodels as rdm

    status = {}
    for reftype, path in job["refs"].items():
        try:
            with rdm.open(path) as model:
                model.validate()
                status[reftype] = "ok " + type(model).__name__
        except Exception as exc:  # any failure means this file needs rebuilding
            status[reftype] = f"fail {type(exc).__name__}: {str(exc)[:200]}"
    return {"status": status}


def job_ref(job: dict) -> dict:
    import asdf
    import numpy as np
    import roman_datamodels.datamodels as rdm

    cls = getattr(rdm, job["model"])
    arrays = np.load(job["npz"]) if job.get("npz") else {}
    meta = json.load(open(job["meta"]))
    model = cls.create_fake_data()
    overlay_meta(model.meta, meta)
    for name in getattr(arrays, "files", []):
        model[name] = arrays[name]
    if job.get("objects_asdf"):
        with asdf.open(job["objects_asdf"], lazy_load=False, memmap=False) as af:
            for name, value in af.tree["objects"].items():
                model[name] = value
            model.validate()
            model.save(job["out"])
    else:
        model.validate()
        model.save(job["out"])
    return {"out": job["out"]}


def _forbid_crds():
    """Replace stpipe's CRDS look-ups: overrides must answer everything."""
    from stpipe import crds_client

    def refuse(*args, **kwargs):
        raise RuntimeError(f"CRDS lookup attempted while offline: {args[:2]!r}")

    crds_client.get_multiple_reference_paths = refuse
    crds_client.get_reference_file = refuse
    crds_client.get_context_used = lambda observatory: "offline"


def job_run(job: dict) -> dict:
    import logging

    import numpy as np

    warnings.simplefilter("ignore")
    t_import = time.perf_counter()
    from romancal.pipeline import ExposurePipeline

    t_import = time.perf_counter() - t_import
    _forbid_crds()
    refs = job["refs"]
    skip = set(job.get("skip", ()))
    steps: dict = {}
    for name in PIPELINE_STEPS:
        cfg: dict = {}
        for reftype in STEP_REFTYPES.get(name, ()):
            cfg[f"override_{reftype}"] = refs.get(reftype, "N/A")
        if name in skip:
            cfg["skip"] = True
        steps[name] = cfg
    steps["rampfit"]["algorithm"] = job["algorithm"]
    pipe = ExposurePipeline(steps=steps, save_results=False)
    pipe.prefetch_references = False  # every type is overridden anyway

    times: dict = {}

    def timed(name, run):
        def wrapper(*args):
            t0 = time.perf_counter()
            result = run(*args)
            times[name] = times.get(name, 0.0) + time.perf_counter() - t0
            return result

        return wrapper

    for name in PIPELINE_STEPS:
        step = getattr(pipe, name)
        step.run = timed(name, step.run)
    logging.getLogger("stpipe").setLevel(logging.WARNING)

    t0 = time.perf_counter()
    model, _catalog, _segm = pipe.run(job["l1"])
    total = time.perf_counter() - t0
    peak_before_write = peak_gib()
    out_dir = job["out_dir"]
    write = None
    if job.get("save", True):
        t1 = time.perf_counter()
        model.save(f"{out_dir}/romancal_{job['algorithm']}_cal.asdf")
        write = time.perf_counter() - t1
    np.savez(f"{out_dir}/romancal_{job['algorithm']}_rate.npz", data=np.asarray(model.data, dtype=np.float32),
             err=np.asarray(model.err, dtype=np.float32), dq=np.asarray(model.dq),
             var_poisson=np.asarray(model.var_poisson, dtype=np.float32))
    cal_step = {k: str(model.meta.cal_step[k]) for k in model.meta.cal_step}
    import romancal
    import stcal

    return {"timings": times, "total": total, "write": write, "import": t_import, "peak_gib": peak_before_write,
            "peak_gib_after_write": peak_gib(), "cal_step": cal_step,
            "versions": {"romancal": romancal.__version__, "stcal": stcal.__version__}}


def main(argv) -> int:
    job = json.loads(argv[0])
    kind = job["kind"]
    handler = {"l1": job_l1, "check_refs": job_check_refs, "ref": job_ref, "run": job_run}.get(kind)
    if handler is None:
        print(f"unknown job kind {kind!r}", file=sys.stderr)
        return 2
    result = handler(job)
    result["peak_gib"] = result.get("peak_gib", peak_gib())
    print("RESULT " + json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
