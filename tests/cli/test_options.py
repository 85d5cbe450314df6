"""One grammar for every sub-command: output, size, verbosity, help, one-line errors."""

import argparse
import logging
import subprocess
import sys
import warnings

import pytest

from romanflow.cli import build_parser, main
from romanflow.cli.options import configure_logging, science_size


def _leaf_parsers(parser, prefix=()):
    """(command words, parser) for every runnable sub-command."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield prefix, parser
        return
    for name, sub in actions[0].choices.items():
        yield from _leaf_parsers(sub, prefix + (name,))


LEAVES = list(_leaf_parsers(build_parser()))


def test_every_command_is_listed():
    names = {" ".join(words) for words, _ in LEAVES}
    assert names == {"refs init", "refs best", "refs prune", "simulate", "calibrate", "tweakreg", "asn", "mosaic",
                     "catalog", "plan", "run", "demo", "archive ingest", "archive search", "archive lineage",
                     "archive stale", "archive sources", "serve", "psf", "hips", "inject"}


@pytest.mark.parametrize("words, parser", LEAVES, ids=[" ".join(w) for w, _ in LEAVES])
def test_every_flag_has_help_and_verbosity_is_everywhere(words, parser):
    options = {s for a in parser._actions for s in a.option_strings}
    assert {"-v", "--verbose", "-q", "--quiet"} <= options
    undocumented = [a.option_strings or a.dest for a in parser._actions if not a.help]
    assert not undocumented, f"romanflow {' '.join(words)}: no help for {undocumented}"


@pytest.mark.parametrize("words, parser", LEAVES, ids=[" ".join(w) for w, _ in LEAVES])
def test_one_spelling_for_output_and_size(words, parser):
    by_flag = {s: a for a in parser._actions for s in a.option_strings}
    if "-o" in by_flag:
        assert by_flag["-o"].option_strings in (["-o", "--output-dir"], ["-o", "--output"])
        if by_flag["-o"].option_strings == ["-o", "--output"]:  # a single file
            assert by_flag["-o"].metavar == "FILE"
    assert "--science-size" not in by_flag and "--pointing-error-arcsec" not in by_flag
    if "--output" in by_flag:  # only ever as the long form of -o, for a command writing one file
        assert by_flag["--output"].option_strings == ["-o", "--output"]
    if "--size" in by_flag:
        assert by_flag["--size"].type is science_size


@pytest.mark.parametrize("text, value", [("full", 4088), ("SMALL", 248), ("504", 504), ("1016", 1016)])
def test_size_values(text, value):
    assert science_size(text) == value


@pytest.mark.parametrize("text", ["huge", "500", "0", "-8"])
def test_bad_size_is_a_parse_error(text):
    with pytest.raises(argparse.ArgumentTypeError):
        science_size(text)


def test_simulate_bad_size_is_one_line_exit_2():
    result = subprocess.run([sys.executable, "-m", "romanflow.cli", "simulate", "--size", "huge"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("romanflow simulate: error: argument --size: 'huge'")


@pytest.mark.parametrize("argv, expected", [
    (["simulate", "--filter", "F999"], "argument --filter: 'F999'"),
    (["simulate", "--detectors", "WFI19"], "argument --detectors: 'WFI19'"),
    (["simulate", "--ma-table", "999"], "argument --ma-table: invalid choice: 999"),
    (["plan", "--ra", "1", "--dec", "2", "--size-deg", "0.1", "-o", "p.yaml", "--filters", "X"],
     "argument --filters: 'X'"),
    (["calibrate", "x.asdf", "--workers", "0"], "argument --workers: '0'"),
    (["mosaic", "a.json", "--kernel", "box"], "argument --kernel: invalid choice: 'box'"),
])
def test_bad_arguments_are_one_line_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and expected in err, err
    assert list(tmp_path.iterdir()) == []


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_version_and_help_exit_0(capsys):
    assert main(["--version"]) == 0
    assert main(["simulate", "--help"]) == 0
    assert "--output-dir" in capsys.readouterr().out


def test_logging_levels_and_warnings_go_to_stderr_one_line(capsys):
    log = logging.getLogger("romanflow.somewhere")
    for verbose, quiet, shown in ((0, False, {"warning"}), (1, False, {"warning", "info"}),
                                  (0, True, set())):
        restore = configure_logging("romanflow test", verbose=verbose, quiet=quiet)
        try:
            log.info("an info line")
            log.warning("a warning line")
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.warn("a python warning", UserWarning)
        finally:
            restore()
        out, err = capsys.readouterr()
        assert out == ""
        assert ("romanflow test: an info line" in err) == ("info" in shown)
        assert ("romanflow test: warning: a warning line" in err) == ("warning" in shown)
        assert ("romanflow test: warning: a python warning" in err) == ("warning" in shown)
    assert not logging.getLogger("romanflow").handlers


def test_internal_error_is_exit_1_with_traceback(capsys, monkeypatch):
    import romanflow.cli.refs as refs

    def broken(args):
        raise ValueError("shapes (4, 4) and (5, 5) differ")

    monkeypatch.setattr(refs, "run_prune", broken)
    assert main(["refs", "prune", "--store", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.rstrip().splitlines()[-1] == "romanflow refs prune: internal error: ValueError: shapes (4, 4) and (5, 5) differ"


# ----------------------------------------------------------------------------- validated argument types
from romanflow.cli import EXIT_BROKEN_PIPE  # noqa: E402
from romanflow.cli.options import (  # noqa: E402
    finite_float,
    iso_time,
    latitude,
    memory_size,
    non_negative_float,
    output_dir,
    output_file,
    positive_float,
    progress_bar,
)


@pytest.mark.parametrize("parse, text, value", [
    (finite_float, "-3.5", -3.5), (finite_float, "1e3", 1000.0), (finite_float, "0", 0.0),
    (positive_float, "0.055", 0.055), (positive_float, "1e-9", 1e-9),
    (non_negative_float, "0", 0.0), (non_negative_float, "2.5", 2.5),
    (latitude, "-90", -90.0), (latitude, "90", 90.0), (latitude, "66.5", 66.5),
])
def test_number_types_accept(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize("parse, text", [
    (finite_float, "nan"), (finite_float, "inf"), (finite_float, "-inf"), (finite_float, "abc"), (finite_float, ""),
    (positive_float, "0"), (positive_float, "-1"), (positive_float, "nan"), (positive_float, "inf"),
    (positive_float, "x"), (non_negative_float, "-0.1"), (non_negative_float, "nan"), (non_negative_float, "inf"),
    (latitude, "90.0001"), (latitude, "-91"), (latitude, "nan"), (latitude, "inf"), (latitude, "north"),
])
def test_number_types_refuse_with_the_value_in_the_message(parse, text):
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text).replace("(", r"\(")):
        parse(text)


@pytest.mark.parametrize("text, isot", [
    ("2027-06-01T00:00:00", "2027-06-01T00:00:00.000"), ("2027-06-01 12:30:00", "2027-06-01T12:30:00.000"),
    ("2027-06-01", "2027-06-01T00:00:00.000"), ("2027-06-01T00:00:00Z", "2027-06-01T00:00:00.000"),
])
def test_iso_time_is_utc(text, isot):
    value = iso_time(text)
    assert value.scale == "utc" and value.isot == isot


@pytest.mark.parametrize("text", ["garbage", "2027-13-45T00:00:00", "58000", "nan", "", "2027-06-01T25:00:00"])
def test_iso_time_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError, match="UTC date"):
        iso_time(text)


@pytest.mark.parametrize("text, value", [("8GiB", 8 * 2**30), ("500MB", 500_000_000), ("2e9", 2_000_000_000),
                                         ("1.5 kB", 1500)])
def test_memory_size(text, value):
    assert memory_size(text) == value


@pytest.mark.parametrize("text", ["lots", "0", "-1GB", "GB", "", "  ", "nan", "8 parsecs"])
def test_memory_size_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError, match="amount of memory"):
        memory_size(text)


def test_output_locations(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    assert output_dir(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    assert output_dir(str(tmp_path)) == str(tmp_path)
    assert output_file(str(tmp_path / "new" / "plan.yaml")) == str(tmp_path / "new" / "plan.yaml")
    for parse, text, problem in [
        (output_dir, notes, "not a folder"), (output_dir, notes / "out", "not a folder"),
        (output_dir, tmp_path / ("n" * 300), "name too long"), (output_dir, "", "expected a folder"),
        (output_file, tmp_path, "is a folder"), (output_file, notes / "plan.yaml", "not a folder"),
        (output_file, tmp_path / ("n" * 300) / "plan.yaml", "name too long"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=problem):
            parse(str(text))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing created by checking


def test_an_unusable_output_folder_is_a_parse_error(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.write_text("mine\n")
    assert main(["demo", "-o", str(notes / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("romanflow demo: error: argument -o/--output-dir:"), err
    assert notes.read_text() == "mine\n"


def test_demo_checks_its_default_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo_output").write_text("mine\n")
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--output-dir" in err and "demo_output" in err, err
    assert (tmp_path / "demo_output").read_text() == "mine\n"


# ----------------------------------------------------------------------------- progress and broken pipes
def test_progress_bar_only_on_a_terminal_and_erased_by_an_error(capsys):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    args = argparse.Namespace(quiet=False)
    with progress_bar(args, total=3) as bar:  # stderr is captured: not a terminal
        bar.update(1)
    assert capsys.readouterr().err == ""
    terminal = Terminal()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", terminal)
        with pytest.raises(RuntimeError):
            with progress_bar(args, total=3, desc="work") as bar:
                bar.update(1)
                raise RuntimeError("stop")
    shown = terminal.getvalue()
    assert "work" in shown and not shown.endswith("\n")  # the bar's line is cleared, not left above the error
    assert shown.rsplit("\r", 1)[-1].strip() == ""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", Terminal())
        with progress_bar(argparse.Namespace(quiet=True), total=3) as bar:
            bar.update(1)
        assert sys.stderr.getvalue() == ""


def test_broken_stdout_ends_with_141_and_no_message(capsys, monkeypatch):
    import io

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["catalog", "columns"]) == EXIT_BROKEN_PIPE == 141
    assert capsys.readouterr().err == ""
