"""Bad inputs for every ``romanflow`` command, and the check of what the command must do with them.

A :class:`Case` is an argument list with placeholders, run in a folder of its own (the working folder of
the command) holding copies of the valid inputs it names and the one bad thing it is about:

* ``{l1}``, ``{l2}``, ``{l3}``, ``{asn}``, ``{catalog}``, ``{refcat}``, ``{plan}``, ``{archive}``: a valid
  file of that kind, copied in under its own name (``{asn}`` brings its L2 member along; ``{archive}`` is
  an embedded archive database, ``archive.db``);
* ``{bad}``: the bad file or folder the case makes (``Case.make``), named ``Case.bad_name``;
* ``{long}``: a file name longer than any file system allows;
* ``{cutout}``: the four numbers of a sky-cell cutout covering the valid L2.

The contract (:func:`contract_violations`): exit status 2, exactly one line on standard error,
``romanflow COMMAND: error: ...`` naming the file or the parameter, no traceback, and the case folder
exactly as it was (no file added, changed or removed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

VALID_KINDS = ("l1", "l2", "l3", "asn", "catalog", "refcat", "plan", "archive")

#: A file name longer than NAME_MAX (255 bytes) on every common file system.
LONG_NAME = "n" * 300

#: Seconds one command may take before the case counts as hung.
CASE_TIMEOUT_S = 120


# ----------------------------------------------------------------------------- making bad things
def missing(path: Path, valid) -> None:
    """Nothing at all."""


def directory(path: Path, valid) -> None:
    path.mkdir()


def empty(path: Path, valid) -> None:
    path.write_bytes(b"")


def garbage(path: Path, valid) -> None:
    path.write_text("this is not what the command expects\n" * 40 + "\x00\x01{[: ,\n")


def regular_file(path: Path, valid) -> None:
    """A regular file (of the user's), where a folder is needed."""
    path.write_text("the user's notes\n")


def truncated(kind: str, fraction: float = 0.5, at: int | None = None) -> Callable:
    """The first ``at`` bytes (or ``fraction`` of them) of a valid ``kind`` file."""

    def make(path: Path, valid) -> None:
        data = valid.path(kind).read_bytes()
        path.write_bytes(data[: at if at is not None else int(len(data) * fraction)])

    make.__name__ = f"truncated_{kind}"
    return make


def copy_of(kind: str) -> Callable:
    """A valid ``kind`` file under the bad name (the wrong product for the command)."""

    def make(path: Path, valid) -> None:
        path.write_bytes(valid.path(kind).read_bytes())

    make.__name__ = f"copy_of_{kind}"
    return make


def folder_with(kind: str) -> Callable:
    """A folder holding one valid ``kind`` file."""

    def make(path: Path, valid) -> None:
        path.mkdir()
        (path / valid.path(kind).name).write_bytes(valid.path(kind).read_bytes())

    make.__name__ = f"folder_with_{kind}"
    return make


def text(content: str) -> Callable:
    def make(path: Path, valid) -> None:
        path.write_text(content)

    return make


def parquet_without_positions(path: Path, valid) -> None:
    """A Parquet table with neither ra nor dec."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1.0, 2.0], "y": [3.0, 4.0]}), path)


def plan_with(**changes) -> Callable:
    """The valid plan with top-level keys or first-exposure keys (``exposure_<key>``) replaced."""

    def make(path: Path, valid) -> None:
        import yaml

        data = yaml.safe_load(valid.plan.read_text())
        for key, value in changes.items():
            if key.startswith("exposure_"):
                data["exposures"][0][key.removeprefix("exposure_")] = value
            else:
                data[key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    return make


def asn_with_member(member: str) -> Callable:
    """The valid association with its one member replaced by ``member`` (a name in the case folder)."""

    def make(path: Path, valid) -> None:
        data = json.loads(valid.asn.read_text())
        data["products"][0]["members"] = [{"expname": member, "exptype": "science"}]
        path.write_text(json.dumps(data))

    return make


# ----------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One bad invocation of a command and the names its error line may give."""

    command: str                      # "calibrate", "refs init"
    what: str                         # short description, part of the test id
    argv: tuple[str, ...]             # with placeholders
    names: tuple[str, ...]            # the error line contains at least one of these
    make: Callable | None = None      # makes {bad}
    bad_name: str = "bad.asdf"
    extra: dict = field(default_factory=dict)   # other files: name -> maker
    subprocess: bool = False          # run as a real process (else through romanflow.cli.main)
    words: tuple[str, ...] = ()       # ... or one of these as a whole word, in any case (a parameter's name)

    @property
    def id(self) -> str:
        return f"{self.command.replace(' ', '-')}-{self.what}"


def flag_names(flag: str) -> tuple[str, ...]:
    """How an error line may name ``--some-flag``: the flag, or ``some_flag=``/``some-flag=``."""
    if flag == "-o":
        return ("-o", "--output-dir", "--output", "output_dir=", "output=")
    bare = flag.lstrip("-")
    return (flag, f"{bare}=", f"{bare.replace('-', '_')}=", f"{bare.replace('-', '_')}:", f"{bare}:")


def _with_option(base: list[str], flag: str, values: list[str]) -> tuple[str, ...]:
    """``base`` with ``flag`` set to ``values`` (replacing it where ``base`` already sets it)."""
    argv = list(base)
    if flag in argv:
        i = argv.index(flag)
        j = i + 1
        while j < len(argv) and not argv[j].startswith("-"):
            j += 1
        del argv[i:j]
    if len(values) == 1:
        return (*argv, f"{flag}={values[0]}")
    return (*argv, flag, *values)


def flag_words(flag: str) -> tuple[str, ...]:
    """``--pixel-scale`` as words: ``pixel-scale``, ``pixel_scale``, ``pixel scale``."""
    bare = flag.lstrip("-")
    return tuple(dict.fromkeys((bare, bare.replace("-", "_"), bare.replace("-", " "))))


def number_cases(command: str, base: list[str], flag: str, bad_values, subprocess_for=()) -> list[Case]:
    """One case per bad value of a numeric (or named) option."""
    cases = []
    for value in bad_values:
        values = value.split() if isinstance(value, str) and " " in value else [value]
        cases.append(Case(command, f"{flag.lstrip('-')}={'_'.join(values) or 'empty'}",
                          _with_option(base, flag, values), flag_names(flag),
                          subprocess=value in subprocess_for, words=flag_words(flag)))
    return cases


def file_cases(command: str, argv: list[str], *, right_kind: str | None, wrong_kinds=(), bad_name="bad.asdf",
               parquet: bool = False, subprocess_for=()) -> list[Case]:
    """The usual unusable files at ``{bad}`` in ``argv``."""
    makers = [("missing", missing), ("directory", directory), ("empty", empty), ("garbage", garbage)]
    if right_kind is not None:
        makers.append(("truncated-half", truncated(right_kind)))
        makers.append(("truncated-header", truncated(right_kind, at=300)))
    makers += [(f"wrong-{k}", copy_of(k)) for k in wrong_kinds]
    if parquet:
        makers.append(("no-ra-dec", parquet_without_positions))
    return [Case(command, f"{label}-{bad_name.split('.')[0]}", tuple(argv), (bad_name,), maker, bad_name,
                 subprocess=label in subprocess_for) for label, maker in makers]


def output_cases(command: str, argv_for: Callable[[str], list[str]], flag: str, *, is_file: bool,
                 subprocess_for=()) -> list[Case]:
    """Unusable output locations for the option ``flag``; ``argv_for(location)`` builds the arguments."""
    names = flag_names(flag)
    cases = [
        Case(command, f"{flag.lstrip('-')}-under-a-file", tuple(argv_for("{bad}/out" + (".x" if is_file else ""))),
             ("notes",) + names, regular_file, "notes", subprocess="under-a-file" in subprocess_for),
        Case(command, f"{flag.lstrip('-')}-name-too-long", tuple(argv_for("{long}")), (LONG_NAME[:40],) + names,
             subprocess="name-too-long" in subprocess_for),
    ]
    if is_file:
        cases.append(Case(command, f"{flag.lstrip('-')}-is-a-folder", tuple(argv_for("{bad}")), ("existing",) + names,
                          directory, "existing", subprocess="is-a-folder" in subprocess_for))
    else:
        cases.append(Case(command, f"{flag.lstrip('-')}-is-a-file", tuple(argv_for("{bad}")), ("notes",) + names,
                          regular_file, "notes", subprocess="is-a-file" in subprocess_for))
    return cases


NUMBERS_POSITIVE = ["nan", "inf", "-1", "0", "abc"]
NUMBERS_FINITE = ["nan", "inf", "-inf", "abc"]
COUNTS_POSITIVE = ["0", "-1", "abc", "2.5"]


def refs_cases() -> list[Case]:
    init = ["refs", "init", "--size", "small", "--detectors", "WFI01", "--filters", "F158", "--store", "store"]
    best = ["refs", "best", "{l1}"]
    cases = number_cases("refs init", init, "--size", ["0", "-8", "500", "nan", "huge"], subprocess_for=("500",))
    cases += number_cases("refs init", init, "--detectors", ["WFI19", "WFI"])
    cases += number_cases("refs init", init, "--filters", ["F999"])
    cases += output_cases("refs init", lambda where: _with_option(init, "--store", [where]), "--store", is_file=False)
    cases += file_cases("refs best", ["refs", "best", "{bad}"], right_kind="l1", wrong_kinds=("l3", "catalog"),
                        subprocess_for=("missing",))
    cases += file_cases("refs best", [*best, "--context", "{bad}"], right_kind=None, bad_name="ctx.yaml")
    cases.append(Case("refs best", "override-dark-missing", (*best, "--override-dark", "{bad}"), ("dark.asdf",),
                      missing, "dark.asdf"))
    cases.append(Case("refs best", "override-dark-garbage", (*best, "--override-dark", "{bad}"), ("dark.asdf",),
                      garbage, "dark.asdf"))
    cases.append(Case("refs best", "store-under-a-file", (*best, "--store", "{bad}/store"),
                      ("notes", "--store"), regular_file, "notes"))
    cases += [Case("refs prune", "store-is-a-file", ("refs", "prune", "--store", "{bad}"), ("notes", "--store"),
                   regular_file, "notes"),
              Case("refs prune", "store-under-a-file", ("refs", "prune", "--store", "{bad}/store"),
                   ("notes", "--store"), regular_file, "notes", subprocess=True),
              Case("refs prune", "store-name-too-long", ("refs", "prune", "--store", "{long}"),
                   (LONG_NAME[:40], "--store"))]
    return cases


def simulate_cases() -> list[Case]:
    base = ["simulate", "--size", "small", "--n-sources", "100", "-o", "sim"]
    cases = number_cases("simulate", base, "--detectors", ["WFI19", "WFI00", "all-of-them"])
    cases += number_cases("simulate", base, "--filter", ["F999", "GRISM", ""])
    cases += number_cases("simulate", base, "--ma-table", ["999", "abc", "-4"])
    cases += number_cases("simulate", base, "--ra", NUMBERS_FINITE, subprocess_for=("nan",))
    cases += number_cases("simulate", base, "--dec", ["nan", "inf", "91", "-90.5", "abc"])
    cases += number_cases("simulate", base, "--pa", NUMBERS_FINITE)
    cases += number_cases("simulate", base, "--n-sources", ["-5", "abc", "2.5", "nan"])
    cases += number_cases("simulate", base, "--size", ["0", "-8", "500", "nan", "huge"])
    cases += number_cases("simulate", base, "--seed", ["-1", "abc", "1.5"])
    cases += number_cases("simulate", base, "--pointing-error", ["nan 0 0", "0 inf 0", "0 0 nan", "a b c"])
    cases += number_cases("simulate", base, "--start-time", ["garbage", "2027-13-45T00:00:00", "58000", "nan"])
    cases += file_cases("simulate", [*base, "--catalog", "{bad}"], right_kind="catalog", wrong_kinds=("l2",),
                        bad_name="scene.parquet", parquet=True)
    cases += output_cases("simulate", lambda where: _with_option(base, "-o", [where]), "-o", is_file=False,
                          subprocess_for=("under-a-file",))
    return cases


def calibrate_cases() -> list[Case]:
    base = ["calibrate", "{l1}", "-o", "out"]
    cases = file_cases("calibrate", ["calibrate", "{bad}", "-o", "out"], right_kind="l1", bad_name="bad_uncal.asdf",
                       wrong_kinds=("l2", "l3", "catalog"), subprocess_for=("truncated-half",))
    cases += [
        Case("calibrate", "second-input-missing", ("calibrate", "{l1}", "{bad}", "-o", "out"), ("other_uncal.asdf",),
             missing, "other_uncal.asdf"),
        Case("calibrate", "second-input-garbage", ("calibrate", "{l1}", "{bad}", "-o", "out"), ("other_uncal.asdf",),
             garbage, "other_uncal.asdf"),
        Case("calibrate", "same-input-twice", ("calibrate", "{l1}", "{l1}", "-o", "out"), ("_uncal.asdf", "_cal.asdf")),
        Case("calibrate", "tweakreg-without-refcat", (*base, "--tweakreg"), ("--tweakreg", "--refcat")),
    ]
    cases += number_cases("calibrate", base, "--workers", ["0", "-1", "abc", "nan"])
    cases += number_cases("calibrate", base, "--skip", ["nope", "ramp-fit"])
    cases += number_cases("calibrate", base, "--ramp-method", ["nope"])
    cases += file_cases("calibrate", [*base, "--context", "{bad}"], right_kind=None, bad_name="ctx.yaml")
    cases += file_cases("calibrate", [*base, "--override-dark", "{bad}"], right_kind=None, bad_name="dark.asdf",
                        wrong_kinds=("l1",))
    cases += file_cases("calibrate", [*base, "--refcat", "{bad}"], right_kind="refcat", bad_name="gaia.parquet",
                        wrong_kinds=("l2",), parquet=True)
    cases += output_cases("calibrate", lambda where: ["calibrate", "{l1}", "-o", where], "-o", is_file=False)
    return cases


def tweakreg_cases() -> list[Case]:
    base = ["tweakreg", "{l2}", "--refcat", "{refcat}", "-o", "out"]
    cases = file_cases("tweakreg", ["tweakreg", "{bad}", "--refcat", "{refcat}", "-o", "out"], right_kind="l2",
                       bad_name="bad_cal.asdf", wrong_kinds=("l1", "l3"), subprocess_for=("wrong-l1",))
    cases += file_cases("tweakreg", ["tweakreg", "{l2}", "--refcat", "{bad}", "-o", "out"], right_kind="refcat",
                        bad_name="gaia.parquet", wrong_kinds=("l2",), parquet=True)
    cases += [
        Case("tweakreg", "in-place-refcat-garbage", ("tweakreg", "{l2}", "--refcat", "{bad}"), ("gaia.parquet",),
             garbage, "gaia.parquet"),
        Case("tweakreg", "second-input-garbage", ("tweakreg", "{l2}", "{bad}", "--refcat", "{refcat}", "-o", "out"),
             ("other_cal.asdf",), garbage, "other_cal.asdf"),
    ]
    cases += number_cases("tweakreg", base, "--snr-threshold", NUMBERS_POSITIVE)
    cases += number_cases("tweakreg", base, "--minobj", COUNTS_POSITIVE)
    cases += number_cases("tweakreg", base, "--searchrad", NUMBERS_POSITIVE)
    cases += number_cases("tweakreg", base, "--fitgeometry", ["nope"])
    cases += output_cases("tweakreg", lambda where: _with_option(base, "-o", [where]), "-o", is_file=False)
    return cases


def asn_cases() -> list[Case]:
    base = ["asn", "{l2}", "-o", "out"]
    cases = file_cases("asn", ["asn", "{bad}", "-o", "out"], right_kind="l2", bad_name="bad_cal.asdf",
                       wrong_kinds=("l1", "l3"), subprocess_for=("garbage",))
    cases.append(Case("asn", "empty-folder", ("asn", "{bad}", "-o", "out"), ("nothing_here",), directory,
                      "nothing_here"))
    cases += number_cases("asn", base, "--product-type", ["nope"])
    cases += number_cases("asn", base, "--skycell", ["nope", "000p00x99y99"])
    cases += number_cases("asn", base, "--data-release-id", ["a/b"])
    cases += output_cases("asn", lambda where: ["asn", "{l2}", "-o", where], "-o", is_file=False)
    return cases


def mosaic_cases() -> list[Case]:
    cut = ["{cutout}"]
    base = ["mosaic", "{asn}", "--cutout", *cut, "-o", "out_coadd.asdf"]
    cases = [
        Case("mosaic", f"association-{label}", ("mosaic", "{bad}", "--cutout", *cut, "-o", "out_coadd.asdf"),
             ("bad_asn.json", "gone_cal.asdf"), maker, "bad_asn.json", subprocess=label == "missing")
        for label, maker in [("missing", missing), ("directory", directory), ("empty", empty),
                             ("garbage", garbage), ("truncated", truncated("asn")),
                             ("is-an-l2", copy_of("l2")), ("json-list", text("[1, 2, 3]\n")),
                             ("member-missing", asn_with_member("gone_cal.asdf"))]
    ]
    cases.append(Case("mosaic", "association-member-garbage",
                      ("mosaic", "{bad}", "--cutout", *cut, "-o", "out_coadd.asdf"), ("junk_cal.asdf",),
                      asn_with_member("junk_cal.asdf"), "bad_asn.json", extra={"junk_cal.asdf": garbage}))
    cases.append(Case("mosaic", "association-member-is-l1",
                      ("mosaic", "{bad}", "--cutout", *cut, "-o", "out_coadd.asdf"), ("raw_uncal.asdf",),
                      asn_with_member("raw_uncal.asdf"), "bad_asn.json", extra={"raw_uncal.asdf": copy_of("l1")}))
    cases += number_cases("mosaic", base, "--pixel-scale", NUMBERS_POSITIVE)
    cases += number_cases("mosaic", base, "--pixfrac", NUMBERS_POSITIVE)
    cases += number_cases("mosaic", base, "--cutout", ["0 0 0 0", "0 0 -5 10", "999999 999999 10 10", "a b c d"])
    cases += number_cases("mosaic", base, "--kernel", ["nope"])
    cases += number_cases("mosaic", base, "--weight-type", ["nope"])
    cases += output_cases("mosaic", lambda where: _with_option(base, "-o", [where]), "-o", is_file=True)
    cases.append(Case("mosaic", "output-is-its-input", ("mosaic", "{asn}", "--cutout", *cut, "-o", "{l2}"),
                      ("_cal.asdf", "-o")))
    return cases


def catalog_cases() -> list[Case]:
    base = ["catalog", "{l2}", "-o", "out", "--no-psf"]
    cases = file_cases("catalog", ["catalog", "{bad}", "-o", "out", "--no-psf"], right_kind="l2",
                       bad_name="bad_cal.asdf", wrong_kinds=("l1", "catalog"), subprocess_for=("wrong-l1",))
    cases.append(Case("catalog", "truncated-half-l3", ("catalog", "{bad}", "-o", "out", "--no-psf"),
                      ("bad_coadd.asdf",), truncated("l3"), "bad_coadd.asdf"))
    cases.append(Case("catalog", "second-image-garbage", ("catalog", "{l2}", "{bad}", "-o", "out", "--no-psf"),
                      ("other_cal.asdf",), garbage, "other_cal.asdf"))
    cases.append(Case("catalog", "no-output-dir", ("catalog", "{l2}", "--no-psf"), ("-o", "--output-dir")))
    cases += number_cases("catalog", base, "--snr-threshold", NUMBERS_POSITIVE)
    cases += number_cases("catalog", base, "--n-pixels", COUNTS_POSITIVE)
    cases += number_cases("catalog", base, "--psf-fwhm", NUMBERS_POSITIVE)
    cases += number_cases("catalog", base, "--bands", ["F999", "F106", ","])
    cases += number_cases("catalog", base, "--name", ["a/b", ""])
    forced = ["catalog", "{l2}", "--forced", "{bad}", "-o", "out"]
    cases += file_cases("catalog", forced, right_kind="catalog", bad_name="positions.parquet", wrong_kinds=("l2",),
                        parquet=True)
    cases.append(Case("catalog", "forced-second-image-garbage",
                      ("catalog", "{l2}", "{bad}", "--forced", "{catalog}", "-o", "out"), ("other_cal.asdf",),
                      garbage, "other_cal.asdf"))
    cases += output_cases("catalog", lambda where: _with_option(base, "-o", [where]), "-o", is_file=False)
    cases += output_cases("catalog", lambda where: [*base, "--hats", where], "--hats", is_file=False)
    return cases


def plan_cases() -> list[Case]:
    base = ["plan", "--ra", "270", "--dec", "66", "--size-deg", "0.05", "--detectors", "WFI01", "--size", "small",
            "-o", "new_plan.yaml"]
    cases = number_cases("plan", base, "--ra", NUMBERS_FINITE)
    cases += number_cases("plan", base, "--dec", ["nan", "inf", "91", "-91", "abc"], subprocess_for=("91",))
    cases += number_cases("plan", base, "--size-deg", NUMBERS_POSITIVE)
    cases += number_cases("plan", base, "--pa", NUMBERS_FINITE)
    cases += number_cases("plan", base, "--pointing-error-rms", ["-1", "nan", "inf", "abc"])
    cases += number_cases("plan", base, "--density", ["nan", "inf", "-1", "abc"])
    cases += number_cases("plan", base, "--seed", ["-1", "abc"])
    cases += number_cases("plan", base, "--filters", ["F999"])
    cases += number_cases("plan", base, "--dither", ["nope"])
    cases += number_cases("plan", base, "--detectors", ["WFI19"])
    cases += number_cases("plan", base, "--size", ["500", "0"])
    cases += number_cases("plan", base, "--ma-table", ["999"])
    cases += number_cases("plan", base, "--name", ["a/b"])
    cases += output_cases("plan", lambda where: _with_option(base, "-o", [where]), "-o", is_file=True)
    return cases


def run_cases() -> list[Case]:
    base = ["run", "{plan}", "-o", "out", "--dry-run"]
    argv = ["run", "{bad}", "-o", "out", "--dry-run"]
    cases = [Case("run", f"plan-{label}", tuple(argv), ("bad_plan.yaml",), maker, "bad_plan.yaml",
                  subprocess=label == "garbage")
             for label, maker in [("missing", missing), ("empty", empty), ("garbage", garbage),
                                  ("truncated", truncated("plan", at=200)), ("is-an-l1", copy_of("l1")),
                                  ("yaml-list", text("- 1\n- 2\n")),
                                  ("science-size-500", plan_with(science_size=500)),
                                  ("no-exposures", plan_with(exposures=[])),
                                  ("filter-F999", plan_with(exposure_filter="F999")),
                                  ("detector-WFI19", plan_with(exposure_detectors=["WFI19"])),
                                  ("ma-table-999", plan_with(exposure_ma_table=999)),
                                  ("dec-91", plan_with(exposure_pointing={"ra": 270.0, "dec": 91.0, "pa": 0.0})),
                                  ("start-time-garbage", plan_with(exposure_start_time="garbage")),
                                  ("seed-negative", plan_with(exposure_seed=-1))]]
    cases.append(Case("run", "plan-empty-folder", tuple(argv), ("nothing_here",), directory, "nothing_here"))
    cases.append(Case("run", "folder-refcat-missing", ("run", "{bad}", "--refcat", "gone.parquet", "-o", "out",
                                                       "--dry-run"), ("gone.parquet",), folder_with("l2"), "l2s"))
    cases += number_cases("run", base, "--workers", ["0", "-1", "abc"])
    cases += number_cases("run", [*base, "--workers", "1"], "--memory-limit", ["lots", "-1GB"])
    cases += output_cases("run", lambda where: ["run", "{plan}", "-o", where], "-o", is_file=False,
                          subprocess_for=("name-too-long",))
    return cases


def demo_cases() -> list[Case]:
    return output_cases("demo", lambda where: ["demo", "-o", where], "-o", is_file=False,
                        subprocess_for=("under-a-file",))


def archive_cases() -> list[Case]:
    db = ["--db", "sqlite:///{archive}"]
    ingest = ["archive", "ingest", "{l2}", "--db", "sqlite:///new.db"]
    search = ["archive", "search", *db, "--ra", "270", "--dec", "66", "--radius", "0.1"]
    cases = file_cases("archive ingest", ["archive", "ingest", "{bad}", "--db", "sqlite:///new.db"],
                       right_kind="l2", bad_name="bad_cal.asdf", subprocess_for=("garbage",))
    cases += number_cases("archive ingest", ingest, "--db", ["nosuch://x", "sqlite://", "mysql://u@h/db"],
                          subprocess_for=("nosuch://x",))
    cases.append(Case("archive ingest", "db-postgresql-without-root", (*ingest[:-1], "postgresql://"),
                      ("postgresql://", "--root"), words=("db",)))
    cases.append(Case("archive ingest", "db-server-unreachable",
                      (*ingest[:-1], "postgresql://nobody@127.0.0.1:9/none"), ("--db", "127.0.0.1:9"),
                      subprocess=True, words=("db",)))
    cases += number_cases("archive ingest", ingest, "--batch", COUNTS_POSITIVE)
    cases += number_cases("archive search", search, "--ra", NUMBERS_FINITE)
    cases += number_cases("archive search", search, "--dec", ["nan", "91", "abc"])
    cases += number_cases("archive search", search, "--radius", NUMBERS_POSITIVE)
    cases += number_cases("archive search", ["archive", "search", *db], "--polygon", ["1 2 3", "a b c d e f"])
    cases += number_cases("archive search", ["archive", "search", *db], "--time-range",
                          ["garbage 2027-01-01", "2028-01-01 2027-01-01"])
    cases += number_cases("archive search", ["archive", "search", *db], "--filter",
                          ["F158'; DROP TABLE obscore; --", "F999"])
    cases += number_cases("archive search", ["archive", "search", *db], "--detector", ["WFI19"])
    cases += number_cases("archive search", ["archive", "search", *db], "--maxrec", ["-1", "abc"])
    cases.append(Case("archive search", "db-missing", ("archive", "search", "--db", "sqlite:///{bad}"),
                      ("nothing.db",), missing, "nothing.db", subprocess=True))
    cases.append(Case("archive search", "db-garbage", ("archive", "search", "--db", "sqlite:///{bad}"),
                      ("junk.db",), garbage, "junk.db"))
    cases.append(Case("archive lineage", "unknown-id", ("archive", "lineage", *db, "no_such_product"),
                      ("no_such_product",)))
    cases.append(Case("archive lineage", "injection-shaped-id",
                      ("archive", "lineage", *db, "x' OR '1'='1"), ("x' OR '1'='1",)))
    cases += number_cases("archive sources", ["archive", "sources", *db, "--ra", "270", "--dec", "66",
                                              "--radius", "0.1"], "--radius", NUMBERS_POSITIVE)
    cases += file_cases("archive stale", ["archive", "stale", *db, "--context", "{bad}"], right_kind=None,
                        bad_name="ctx.yaml")
    return cases


def serve_cases() -> list[Case]:
    base = ["serve", "--db", "sqlite:///{archive}", "--port", "0"]
    cases = number_cases("serve", base, "--db", ["nosuch://x", "sqlite:///nothing/here.db"])
    cases += number_cases("serve", base, "--port", ["-1", "70000", "abc"])
    cases += number_cases("serve", base, "--max-rows", ["0", "-5", "abc"])
    cases += number_cases("serve", base, "--max-cutout", ["0", "-5", "abc"])
    cases += number_cases("serve", base, "--query-timeout", NUMBERS_POSITIVE)
    cases += number_cases("serve", base, "--hats", ["nodir", "name=gone_folder"])
    cases.append(Case("serve", "token-file-missing", (*base, "--token-file", "{bad}"), ("token.txt",),
                      missing, "token.txt"))
    cases.append(Case("serve", "token-file-empty", (*base, "--token-file", "{bad}"), ("token.txt",),
                      empty, "token.txt"))
    cases.append(Case("serve", "db-server-unreachable",
                      ("serve", "--db", "postgresql://nobody@127.0.0.1:9/none", "--root", ".", "--port", "0"),
                      ("--db", "127.0.0.1:9"), subprocess=True, words=("db",)))
    return cases


def psf_cases() -> list[Case]:
    base = ["psf", "--detector", "WFI07", "--filter", "F158", "--x", "2000", "--y", "100", "-o", "psf.fits"]
    cases = number_cases("psf", base, "--detector", ["WFI19", "WFI00", "abc"], subprocess_for=("WFI19",))
    cases += number_cases("psf", base, "--filter", ["F999", "GRISM", ""])
    cases += number_cases("psf", base, "--x", ["-5", "5000", "nan", "abc"])
    cases += number_cases("psf", base, "--y", ["-5", "4088", "inf"])
    cases += number_cases("psf", base, "--oversample", ["0", "-1", "abc", "0.5"])
    cases += number_cases("psf", base, "--stamp-size", ["0", "-3", "abc"])
    cases += number_cases("psf", base, "--spectrum", ["Z9V", "-100", "nan"])
    cases += number_cases("psf", base, "--jitter", ["-1", "nan", "abc"])
    cases += output_cases("psf", lambda where: _with_option(base, "-o", [where]), "-o", is_file=True)
    cases.append(Case("psf", "output-unknown-format", tuple(_with_option(base, "-o", ["psf.jpg2"])),
                      ("psf.jpg2", "-o")))
    return cases


def hips_cases() -> list[Case]:
    cases = file_cases("hips", ["hips", "{bad}", "-o", "tiles"], right_kind="l3", bad_name="bad_coadd.asdf",
                       wrong_kinds=("l1", "l2", "catalog"), subprocess_for=("garbage",))
    cases += output_cases("hips", lambda where: ["hips", "{l3}", "-o", where], "-o", is_file=False)
    return cases


def inject_cases() -> list[Case]:
    base = ["inject", "{l2}", "--n", "20", "--mag-range", "20", "24", "--no-recover", "-o", "out"]
    cases = file_cases("inject", ["inject", "{bad}", "--n", "20", "--no-recover", "-o", "out"], right_kind="l2",
                       bad_name="bad_cal.asdf", wrong_kinds=("l1", "catalog"), subprocess_for=("garbage",))
    cases += file_cases("inject", ["inject", "{l2}", "--catalog", "{bad}", "--no-recover", "-o", "out"],
                        right_kind="catalog", bad_name="fake.parquet", wrong_kinds=("l2",), parquet=True)
    cases += number_cases("inject", base, "--n", COUNTS_POSITIVE)
    cases += number_cases("inject", base, "--mag-range", ["28 20", "nan 24", "20 inf", "a b"])
    cases += number_cases("inject", base, "--star-fraction", ["1.5", "-0.1", "nan"])
    cases += number_cases("inject", base, "--min-separation", ["-1", "nan"])
    cases += number_cases("inject", base, "--seed", ["-1", "abc"])
    cases += number_cases("inject", base, "--name", ["a/b", ""])
    cases += output_cases("inject", lambda where: _with_option(base, "-o", [where]), "-o", is_file=False)
    return cases


def all_cases() -> list[Case]:
    """Every case, for every command."""
    return (refs_cases() + simulate_cases() + calibrate_cases() + tweakreg_cases() + asn_cases()
            + mosaic_cases() + catalog_cases() + plan_cases() + run_cases() + demo_cases() + archive_cases()
            + serve_cases() + psf_cases() + hips_cases() + inject_cases())


# ----------------------------------------------------------------------------- running and checking
def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> content hash ('dir' for folders) of everything under ``folder``."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[rel] = f"link:{os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def prepare(case: Case, folder: Path, valid) -> list[str]:
    """Fill ``folder`` with what ``case`` needs; return its argument list."""
    folder.mkdir(parents=True, exist_ok=True)
    text_argv = " ".join(case.argv)
    for kind in VALID_KINDS:
        if "{" + kind + "}" in text_argv:
            source = valid.path(kind)
            (folder / source.name).write_bytes(source.read_bytes())
            if kind == "asn":
                (folder / valid.l2.name).write_bytes(valid.l2.read_bytes())
    if case.make is not None:
        case.make(folder / case.bad_name, valid)
    for name, maker in case.extra.items():
        maker(folder / name, valid)
    names = {kind: valid.path(kind).name for kind in VALID_KINDS}
    argv = []
    for arg in case.argv:
        if arg == "{cutout}":
            argv += [str(v) for v in valid.cutout]
        else:
            argv.append(arg.format(bad=case.bad_name, long=LONG_NAME, **names))
    return argv


class CaseTimeout(BaseException):
    """A command ran past its time (a BaseException, so that the command's own handlers let it through)."""


@contextmanager
def deadline(seconds: float):
    def expire(signum, frame):
        raise CaseTimeout(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    status: int | None
    stdout: str
    stderr: str


def run_subprocess(argv: list[str], cwd: Path, timeout: float = CASE_TIMEOUT_S) -> Outcome:
    """``python -m romanflow.cli ARGV`` in ``cwd``."""
    try:
        done = subprocess.run([sys.executable, "-m", "romanflow.cli", *argv], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout, env=dict(os.environ))
    except subprocess.TimeoutExpired as exc:
        return Outcome(None, str(exc.stdout or ""), f"timed out after {timeout} s\n{exc.stderr or ''}")
    return Outcome(done.returncode, done.stdout, done.stderr)


def run_in_process(argv: list[str], cwd: Path, timeout: float = CASE_TIMEOUT_S) -> Outcome:
    """``romanflow.cli.main(argv)`` with ``cwd`` as the working folder, its streams captured."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from romanflow.cli import main

    here = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err), deadline(timeout):
            status = main(argv)
    except CaseTimeout as exc:
        status = None
        err.write(f"\n{exc}\n")
    finally:
        os.chdir(here)
    return Outcome(status, out.getvalue(), err.getvalue())


def names_one_of(line: str, names, words) -> bool:
    """Whether ``line`` contains one of ``names``, or one of ``words`` as a whole word."""
    if any(name in line for name in names):
        return True
    return any(re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", line, re.IGNORECASE) for word in words)


def contract_violations(case: Case, outcome: Outcome, before: dict, after: dict) -> list[str]:
    """What ``outcome`` does against the contract for bad input (empty when it keeps it)."""
    problems = []
    if outcome.status != 2:
        problems.append(f"exit status {outcome.status}, expected 2")
    if "Traceback" in outcome.stderr:
        problems.append("a traceback on standard error")
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    prefix = f"romanflow {case.command}: error: "
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on standard error, expected 1")
    error_lines = [line for line in lines if line.startswith(prefix)]
    if not error_lines:
        problems.append(f"no line starting {prefix!r}")
    elif not names_one_of(error_lines[-1], case.names, case.words):
        problems.append(f"the error line names none of {list(case.names + case.words)}")
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    if added:
        problems.append(f"left behind: {added}")
    if removed:
        problems.append(f"removed: {removed}")
    if changed:
        problems.append(f"changed: {changed}")
    return problems
