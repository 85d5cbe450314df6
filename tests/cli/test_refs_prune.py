"""Stores of other parameter-model versions are found and removed; the current one is kept."""

from __future__ import annotations

from romanflow.cli import main
from romanflow.refdata.store import ReferenceStore, parameter_fingerprint, stale_stores


def test_prune_removes_only_stale_stores(tmp_path, capsys):
    current = ReferenceStore(tmp_path, science_size=248)
    old = tmp_path / "248_0123456789"
    old.mkdir()
    (old / "roman_wfi_dark_wfi01_0001.asdf").write_bytes(b"x" * 1000)
    (old / "romanflow_0001.context.yaml").write_text("rules: []\n")
    (tmp_path / "notes").mkdir()  # not a store folder: left alone
    assert [p for p, _ in stale_stores(tmp_path)] == [old]
    assert current.directory.name.endswith(parameter_fingerprint())
    assert main(["refs", "prune", "--store", str(tmp_path)]) == 0
    assert not old.exists() and current.directory.exists() and (tmp_path / "notes").exists()
    assert "deleted" in capsys.readouterr().out
