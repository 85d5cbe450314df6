"""``romanflow hips MOSAIC... -o DIR``."""

from __future__ import annotations

from romanflow.cli import main


def test_hips_command_builds_and_updates(mosaics, tmp_path, capsys):
    out = tmp_path / "hips"
    assert main(["hips", str(mosaics["A"]), "-o", str(out), "-q"]) == 0
    line = capsys.readouterr().out
    assert "F158" in line and "tile order 13" in line
    assert (out / "F158" / "properties").is_file() and (out / "F158" / "Moc.fits").is_file()
    assert not (out / "colour").exists()  # one band: no composite
    assert main(["hips", str(mosaics["A106"]), "-o", str(out), "-q"]) == 0
    assert (out / "colour" / "properties").is_file()


def test_hips_command_reports_bad_inputs_in_one_line(mosaics, tmp_path, capsys):
    bad = tmp_path / "broken.asdf"
    bad.write_bytes(b"#ASDF 1.0.0\ngarbage")
    out = tmp_path / "hips"
    assert main(["hips", str(mosaics["A"]), str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.asdf" in err[0] and err[0].startswith("romanflow hips: error:")
    assert not out.exists()  # nothing written when any input is bad
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["hips", str(mosaics["A"]), "-o", str(other)]) == 2
    assert "not a romanflow HiPS folder" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
