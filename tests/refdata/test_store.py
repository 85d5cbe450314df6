"""The embedded store: context listing, lazy synthesis, sharing between processes."""

import multiprocessing

import numpy as np
import pytest

from romanflow.detector import DETECTORS, IMAGING_FILTERS, SMALL_SCIENCE_SIZE
from romanflow.detector_model import DetectorModel
from romanflow.errors import ReferenceSelectionError, RomanflowError
from romanflow.formats.reference_io import read_reference
from romanflow.refdata import CONTEXT_NAME, Context, ReferenceStore, best_references, default_store, select_reference
from romanflow.refdata.store import STORE_ENV, parameter_fingerprint

SIZE = SMALL_SCIENCE_SIZE
META = {"instrument": {"detector": "WFI12", "optical_element": "F184"},
        "exposure": {"type": "WFI_IMAGE", "start_time": "2027-04-01T00:00:00", "ma_table_number": 4}}


@pytest.fixture
def store(tmp_path):
    return ReferenceStore(tmp_path, science_size=SIZE)


def test_context_file_lists_every_detector_and_filter(store):
    assert store.directory.name == f"{SIZE}_{parameter_fingerprint()}"
    assert store.context_path.name == f"{CONTEXT_NAME}.context.yaml"
    ctx = Context.load(store.context_path)
    assert ctx.name == CONTEXT_NAME and ctx.header["science_size"] == SIZE
    flats = {(r.match["instrument.detector"], r.match["instrument.optical_element"]) for r in ctx.rules["flat"]
             if r.match["instrument.detector"] != "N/A"}
    assert {(d, f) for d in DETECTORS for f in IMAGING_FILTERS} <= flats
    for reftype in ("mask", "saturation", "linearity", "inverselinearity", "dark", "gain", "readnoise", "photom"):
        assert {r.match["instrument.detector"] for r in ctx.rules[reftype]} == set(DETECTORS)
    assert list(store.directory.glob("*.asdf")) == []  # nothing is synthesized up front


def test_files_are_made_on_first_use_and_reused(store):
    path = select_reference("dark", META, store)
    assert path.parent == store.directory and path.exists()
    assert [p.name for p in store.directory.glob("*.asdf")] == [path.name]
    np.testing.assert_array_equal(read_reference(path, "dark").dark_slope, DetectorModel("WFI12", SIZE).dark_rate)
    stamp = path.stat().st_mtime_ns
    assert select_reference("dark", META, store) == path
    assert path.stat().st_mtime_ns == stamp
    # The same selection through the context file on disk finds the same file.
    assert select_reference("dark", META, store.context_path) == path
    # Without building, a store path may be returned before the file exists.
    planned = select_reference("flat", META, store, build=False)
    assert planned.name == "roman_wfi_flat_wfi12_f184_0002.asdf" and not planned.exists()


def test_best_references_covers_every_type(store):
    best = best_references(META, store)
    assert set(best) == {"mask", "saturation", "refpix", "linearity", "inverselinearity", "gain", "photom",
                         "dark", "readnoise", "flat", "distortion", "matable", "darkdecaysignal"}
    assert best["refpix"].name == "roman_wfi_refpix_wfi12_0002.asdf"  # one row of coefficients for all channels
    for reftype, path in best.items():
        if path is not None:
            ref = read_reference(path, reftype)
            assert reftype in ("matable", "darkdecaysignal") or ref.meta["instrument"]["detector"] == "WFI12"
    grism = {**META, "instrument": {"detector": "WFI12", "optical_element": "GRISM"}}
    assert select_reference("flat", grism, store) is None


def test_unknown_detector_is_a_clear_error(store):
    meta = {**META, "instrument": {"detector": "WFI19", "optical_element": "F184"}}
    with pytest.raises(ReferenceSelectionError, match="no gain reference .*instrument.detector=WFI19"):
        select_reference("gain", meta, store)


def test_sizes_and_environment_choose_separate_stores(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "env"))
    small = default_store(SIZE)
    assert small.directory == tmp_path / "env" / f"{SIZE}_{parameter_fingerprint()}"
    other = default_store(504)
    assert other.directory == tmp_path / "env" / f"504_{parameter_fingerprint()}"
    path = select_reference("gain", META, science_size=SIZE)
    assert path.parent == small.directory
    assert read_reference(path, "gain").data.shape == (SIZE + 8, SIZE + 8)
    with pytest.raises(RomanflowError, match="science size 250 not supported"):
        ReferenceStore(tmp_path, science_size=250)
    seeded = ReferenceStore(tmp_path, science_size=SIZE, seed=5)
    assert seeded.directory.name == f"{SIZE}_{parameter_fingerprint()}_seed5"


def _materialize(root, name):
    ReferenceStore(root, science_size=SIZE).materialize(name)


def test_concurrent_processes_share_the_store(tmp_path):
    name = "roman_wfi_readnoise_wfi03_0002.asdf"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_materialize, args=(tmp_path, name)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    store = ReferenceStore(tmp_path, science_size=SIZE)
    ref = read_reference(store.directory / name, "readnoise")
    np.testing.assert_array_equal(ref.data, DetectorModel("WFI03", SIZE).read_noise)
    leftovers = [p.name for p in store.directory.iterdir() if p.name not in (name, store.context_path.name, ".locks")]
    assert leftovers == []


def test_build_subset_reports_figures(store):
    figures = store.build(detectors=["WFI02"], filters=["F087"], reftypes=["gain", "flat", "matable"])
    assert figures["files"] == 3 and figures["built"] == 3 and figures["bytes"] > 0
    names = sorted(p.name for p in store.directory.glob("*.asdf"))
    assert names == ["roman_wfi_flat_wfi02_f087_0002.asdf", "roman_wfi_gain_wfi02_0002.asdf",
                     "roman_wfi_matable_0002.asdf"]
    again = store.build(detectors=["WFI02"], filters=["F087"], reftypes=["gain", "flat", "matable"])
    assert again["built"] == 0 and again["bytes"] == figures["bytes"]
    with pytest.raises(RomanflowError, match="cannot provide"):
        store.materialize("roman_wfi_superbias_wfi01_0002.asdf")
