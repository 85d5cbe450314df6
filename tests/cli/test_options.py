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
                     "catalog", "plan", "run", "demo"}


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
