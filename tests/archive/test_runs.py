"""A run registers its products as it writes them; a reference change makes exactly the right products
stale; ``run --reprocess`` redoes exactly those tasks and the archive records the new versions."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from romanflow.archive import Archive
from romanflow.archive.stale import stale_products
from romanflow.cli import main
from romanflow.run.ledger import file_digest

X1, X2 = "r0000101001001001001_0001_wfi01", "r0000101001001001001_0002_wfi01"
CELL = "266p66x02y21"
PRODUCTS = {f"{X1}_uncal", f"{X1}_cal", f"{X1}_cat", f"{X2}_uncal", f"{X2}_cal", f"{X2}_cat",
            f"{CELL}_f158_coadd", f"{CELL}_f158_coadd_outliers", f"{CELL}_cat"}
#: What a new WFI01 dark with a USEAFTER between the two exposures must make stale.
STALE = {f"{X2}_cal", f"{X2}_cat", f"{CELL}_f158_coadd", f"{CELL}_f158_coadd_outliers", f"{CELL}_cat"}


def _files(folder: Path) -> dict:
    """Product file (relative path) -> SHA-256, ledger and archive excluded."""
    return {str(p.relative_to(folder)): file_digest(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.parts[len(folder.parts)] not in ("ledger",) and "archive.db" not in p.name
            and not p.name.startswith(".")}


def new_dark_context(folder: Path, useafter: str = "2027-06-01T00:01:00") -> Path:
    """A context equal to the embedded store's, plus a new WFI01 dark used after ``useafter``."""
    import copy

    from romanflow.refdata import default_store
    from romanflow.refdata.context import Context

    store = default_store(science_size=248)
    ctx = store.context
    folder.mkdir(parents=True, exist_ok=True)
    old_dark = store.materialize("roman_wfi_dark_wfi01_0002.asdf")
    new_dark = folder / "roman_wfi_dark_wfi01_0003.asdf"
    import roman_datamodels.datamodels as rdm

    with rdm.open(old_dark) as model:  # a re-measured dark: 0.05 DN/s more everywhere
        model.dark_slope = (np.asarray(model.dark_slope) + np.float32(0.05)).astype(np.float32)
        model.save(new_dark)
    rules = copy.deepcopy(ctx.rules)
    for reftype, rs in rules.items():
        for rule in rs:
            rule.useafter = {d: (n if n.upper() == "N/A" else str(store.directory / n)) for d, n in rule.useafter.items()}
            if reftype == "dark" and str(rule.match.get("instrument.detector", "")).upper() == "WFI01":
                rule.useafter[useafter] = str(new_dark)
    return Context("romanflow_0002", rules, root=folder, header=dict(ctx.header)).save(folder / "romanflow_0002.context.yaml")


def test_run_registers_every_product_with_lineage(run_folder):
    with Archive.open(f"sqlite:///{run_folder / 'archive.db'}") as arc:
        table = arc.search()
        assert set(table["obs_id"]) == PRODUCTS
        assert all(arc.product(i)["path"].is_file() for i in PRODUCTS)
        assert arc.product(f"{X1}_cal")["path"] == run_folder / "registered" / f"{X1}_cal.asdf"
        assert list(arc.versions(f"{X1}_cal")["status"]) == ["superseded", "current"]
        up = set(arc.lineage(f"{CELL}_cat", "up")["obs_id"])
        assert {f"{CELL}_f158_coadd", f"{X1}_cal", f"{X2}_cal", f"{X1}_uncal", f"{X2}_uncal",
                "roman_wfi_dark_wfi01_0002"} <= up
        down = set(arc.lineage(f"{X1}_uncal", "down")["obs_id"])
        assert down == {f"{X1}_cal", f"{X1}_cat", f"{CELL}_f158_coadd", f"{CELL}_f158_coadd_outliers", f"{CELL}_cat"}
        # no stale product under the context the run used
        assert len(stale_products(arc)) == 0


def test_ingesting_the_folder_gives_the_same_archive_on_both_backends(run_folder, open_archive):
    arc = open_archive(root=run_folder)
    report = arc.ingest([run_folder])
    assert not report.failed
    assert set(report.registered) == PRODUCTS and set(report.updated) == {f"{X1}_cal", f"{X2}_cal"}
    again = arc.ingest([run_folder])
    assert not again.registered and not again.updated and len(again.unchanged) == 11
    with Archive.open(f"sqlite:///{run_folder / 'archive.db'}") as ref:
        a, b = arc.search(), ref.search()
        assert list(a["obs_id"]) == list(b["obs_id"])
        assert list(a["sha256"]) == list(b["sha256"])
        np.testing.assert_allclose(np.asarray(a["s_ra"], float), np.asarray(b["s_ra"], float), atol=1e-9,
                                   equal_nan=True)
    cone = arc.search(ra=float(b["s_ra"][list(b["obs_id"]).index(f"{X2}_cal")]),
                      dec=float(b["s_dec"][list(b["obs_id"]).index(f"{X2}_cal")]), radius=1 / 3600)
    assert {f"{X2}_cal", f"{X2}_cat", f"{X2}_uncal", f"{CELL}_f158_coadd", f"{CELL}_cat"} <= set(cone["obs_id"])
    assert len(arc.cone_sources(float(b["s_ra"][0]), float(b["s_dec"][0]), 0.01)) > 10


def test_stale_lists_exactly_the_later_exposure_and_its_downstream(run_folder, open_archive, tmp_path):
    context = new_dark_context(tmp_path / "ctx")
    arc = open_archive(root=run_folder)
    arc.ingest([run_folder])
    table = stale_products(arc, context)
    assert set(table["obs_id"]) == STALE
    own = table[table["reason"] == "reference"]
    assert list(own["obs_id"]) == [f"{X2}_cal"]
    assert "dark: roman_wfi_dark_wfi01_0002.asdf -> roman_wfi_dark_wfi01_0003.asdf" in own["detail"][0]


def test_run_reprocess_redoes_exactly_the_stale_tasks(run_folder, tmp_path, capsys):
    from romanflow.run.plan import write_plan
    from small_run import small_plan

    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    context = new_dark_context(tmp_path / "ctx")
    plan = write_plan(small_plan(), tmp_path / "plan.yaml")
    before = _files(folder)
    url = f"sqlite:///{folder / 'archive.db'}"
    with Archive.open(url) as arc:
        old_versions = {i: arc.product(i)["version"] for i in PRODUCTS}
    capsys.readouterr()
    assert main(["run", str(plan), "-o", str(folder), "--archive", url, "--reprocess", "--context", str(context),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"redoing 5 task(s): calibrate-{X2}, catalog-{CELL}, hats, mosaic-{CELL}-f158, register-{X2[:-6]}" in out
    after = _files(folder)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed  # the stale products were rewritten ...
    for name in changed:  # ... and nothing else
        assert name.startswith("hats/") or Path(name).name.rsplit(".", 1)[0] in STALE, name
    assert {f"l2/{X2}_cal.asdf", f"registered/{X2}_cal.asdf", f"l3/{CELL}_f158_coadd.asdf", f"l4/{CELL}_cat.parquet"} <= changed
    with Archive.open(url) as arc:
        grew = {i: arc.product(i)["version"] - old_versions[i] for i in PRODUCTS}
        assert not any(grew[i] for i in PRODUCTS - STALE)  # nothing else has a new version
        # every stale product was redone; the outlier record came out byte-identical (no outliers either
        # time), and an unchanged file is not a new version
        assert all(grew[i] > 0 for i in STALE - {f"{CELL}_f158_coadd_outliers"})
        assert grew[f"{CELL}_f158_coadd_outliers"] == 0
        assert f"l3/{CELL}_f158_coadd_outliers.parquet" not in changed
        assert arc.product(f"{X2}_cal")["ref_files"]["dark"] == "roman_wfi_dark_wfi01_0003.asdf"
        assert arc.product(f"{X1}_cal")["ref_files"]["dark"] == "roman_wfi_dark_wfi01_0002.asdf"
        assert len(stale_products(arc, context)) == 0
