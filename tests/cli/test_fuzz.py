"""Single-byte corruptions of valid products: the command reading one either stops with one clean line
or makes exactly the product the intact file gives. Never a traceback, never a silently different
product.

A plan is YAML that people edit, so a flip that leaves a valid but different plan is accepted there (a
dry run writes no product); the products (ASDF, Parquet) must not change silently, except where a flip in
an ASDF tree turns a digit of a number into another digit: that is a valid file with another value, which
no reader can tell from one edited on purpose (ASDF checksums blocks, not the tree).

Positions are drawn with a fixed seed per kind, spread over the parts of the file format: for ASDF
(L1, L2, L3) the YAML tree, the binary block headers and the compressed block data; for Parquet the
magic bytes, the column data and the footer metadata; for the plan YAML the whole text.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from bad_inputs import Case, contract_violations, run_in_process, snapshot

FLIPS_PER_KIND = 30

#: Per kind: the command reading the file ({file}: the file; {l2}: the valid L2, for forced photometry).
COMMANDS = {
    "l1": ("calibrate", ["calibrate", "{file}", "-o", "out", "--workers", "1", "-q"]),
    "l2": ("catalog", ["catalog", "{file}", "-o", "out", "--no-psf", "-q"]),
    "l3": ("catalog", ["catalog", "{file}", "-o", "out", "--no-psf", "-q"]),
    "catalog": ("catalog", ["catalog", "{l2}", "--forced", "{file}", "-o", "out", "-q"]),
    "plan": ("run", ["run", "{file}", "-o", "out", "--dry-run", "-q"]),
}

#: Tree entries that differ between two runs on the same input (timings, dates, library records).
VOLATILE_KEYS = {"cal_logs", "file_date", "history", "asdf_library"}

ASDF_BLOCK_MAGIC = b"\xd3BLK"
ASDF_BLOCK_HEADER = 4 + 2 + 48  # magic, header size, header (flags, compression, sizes, checksum)


# ----------------------------------------------------------------------------- where to flip
def asdf_regions(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """Byte ranges of an ASDF file: YAML tree, block headers, block data."""
    starts = []
    i = data.find(ASDF_BLOCK_MAGIC)
    while i >= 0:
        starts.append(i)
        i = data.find(ASDF_BLOCK_MAGIC, i + 1)
    index = data.find(b"#ASDF BLOCK INDEX")
    end = index if index > 0 else len(data)
    headers = [(s, s + ASDF_BLOCK_HEADER) for s in starts]
    bounds = starts[1:] + [end]
    blocks = [(s + ASDF_BLOCK_HEADER, b) for s, b in zip(starts, bounds) if b > s + ASDF_BLOCK_HEADER]
    return {"tree": [(0, starts[0])], "block-header": headers, "block-data": blocks}


def parquet_regions(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """Byte ranges of a Parquet file: magic bytes, column data, footer metadata."""
    footer_len = int.from_bytes(data[-8:-4], "little")
    footer = len(data) - 8 - footer_len
    return {"magic": [(0, 4), (len(data) - 4, len(data))], "column-data": [(4, footer)],
            "footer": [(footer, len(data) - 4)]}


def flip_positions(kind: str, data: bytes) -> list[tuple[str, int]]:
    """(region, offset) of the ``FLIPS_PER_KIND`` bytes to flip in a ``kind`` file, seeded by the kind."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(kind.encode()).digest()[:4], "little"))
    if kind in ("l1", "l2", "l3"):
        regions, share = asdf_regions(data), {"tree": 10, "block-header": 10, "block-data": 10}
    elif kind == "catalog":
        regions, share = parquet_regions(data), {"magic": 2, "column-data": 14, "footer": 14}
    else:
        regions, share = {"text": [(0, len(data))]}, {"text": FLIPS_PER_KIND}
    out = []
    for region, n in share.items():
        ranges = regions[region]
        sizes = np.array([b - a for a, b in ranges], float)
        for _ in range(n):
            a, b = ranges[rng.choice(len(ranges), p=sizes / sizes.sum())]
            out.append((region, int(rng.integers(a, b))))
    return out


def edited_value(region: str, data: bytes, offset: int, seed: int) -> bool:
    """Whether the flip turns a digit of an ASDF tree into another digit (a valid, different number)."""
    digits = b"0123456789"
    return region == "tree" and data[offset] in digits and flipped(data, offset, seed)[offset] in digits


def flipped(data: bytes, offset: int, seed: int) -> bytes:
    """``data`` with the byte at ``offset`` XORed with a nonzero value."""
    mask = 1 + seed % 255
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1:]


# ----------------------------------------------------------------------------- what a product is
def _walk(node, path: str, out: dict) -> None:
    if isinstance(node, np.ndarray):
        out[path] = (hashlib.sha256(np.ascontiguousarray(node).tobytes()).hexdigest(), node.dtype.str, node.shape)
    elif hasattr(node, "items"):
        for key, value in node.items():
            if key not in VOLATILE_KEYS:
                _walk(value, f"{path}.{key}", out)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _walk(value, f"{path}[{i}]", out)
    elif hasattr(node, "__array__") and not np.isscalar(node) and not hasattr(node, "isot"):
        _walk(np.asarray(node), path, out)
    else:
        out[path] = repr(node)


def product_content(path: Path):
    """What a product holds, comparable between two runs: the ASDF tree and arrays, the Parquet table."""
    if path.suffix == ".asdf":
        import asdf

        out = {}
        with asdf.open(path, lazy_load=False, memmap=False) as af:
            _walk(af.tree, "", out)
        return out
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).replace_schema_metadata(None)
    return path.read_bytes()


def outputs(folder: Path) -> dict:
    """Relative name -> content of every product under ``folder``."""
    return {p.relative_to(folder).as_posix(): product_content(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def same_outputs(a: dict, b: dict) -> bool:
    """Whether two sets of products are the same (NaN equal to NaN in tables)."""
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if hasattr(x, "schema"):
            if not (x.schema.equals(y.schema, check_metadata=False) and x.to_pandas().equals(y.to_pandas())):
                return False
        elif x != y:
            return False
    return True


# ----------------------------------------------------------------------------- running
def _prepare(kind: str, folder: Path, valid, content: bytes) -> list[str]:
    folder.mkdir(parents=True)
    source = valid.path(kind)
    (folder / source.name).write_bytes(content)
    names = {"file": source.name}
    if kind == "catalog":
        shutil.copy(valid.l2, folder / valid.l2.name)
        names["l2"] = valid.l2.name
    return [a.format(**names) for a in COMMANDS[kind][1]]


@pytest.fixture(scope="module")
def intact_results(valid_inputs, tmp_path_factory):
    """Per kind: (stdout, products) of the command on the intact file."""
    results = {}
    for kind in COMMANDS:
        folder = tmp_path_factory.mktemp(f"intact_{kind}") / "case"
        argv = _prepare(kind, folder, valid_inputs, valid_inputs.path(kind).read_bytes())
        outcome = run_in_process(argv, folder)
        assert outcome.status == 0, f"{kind}: {outcome.stderr}"
        results[kind] = (outcome.stdout, outputs(folder / "out") if (folder / "out").exists() else {})
    return results


FLIPS = [(kind, i) for kind in COMMANDS for i in range(FLIPS_PER_KIND)]


@pytest.mark.parametrize("kind, index", FLIPS, ids=[f"{k}-{i:02d}" for k, i in FLIPS])
def test_flipped_byte_fails_cleanly_or_changes_nothing(kind, index, valid_inputs, intact_results, tmp_path,
                                                        record_property):
    data = valid_inputs.path(kind).read_bytes()
    region, offset = flip_positions(kind, data)[index]
    folder = tmp_path / "case"
    argv = _prepare(kind, folder, valid_inputs, flipped(data, offset, index))
    before = snapshot(folder)
    outcome = run_in_process(argv, folder)
    where = f"{kind} byte {offset} ({region}) flipped: romanflow {' '.join(argv)}"
    record_property("region", region)
    record_property("exit_status", outcome.status)
    assert "Traceback" not in outcome.stderr, f"{where}\n{outcome.stderr[-3000:]}"
    if outcome.status == 0 and edited_value(region, data, offset, index):
        # a digit of a number in the YAML tree turned into another digit: a valid file holding another
        # value, as if edited by hand (ASDF checksums its blocks, not its tree), so a different product is
        # the right answer; where the tree's bytes fall varies with the lengths of its log entries
        pass
    elif outcome.status == 0:
        stdout, products = intact_results[kind]
        got = outputs(folder / "out") if (folder / "out").exists() else {}
        assert same_outputs(got, products), f"{where}: exit 0 with a product different from the intact file's"
        if kind == "plan":  # a plan is edited by hand: a changed one is still a plan, but it must be one
            assert outcome.stdout.startswith(f"{valid_inputs.plan.name}: "), f"{where}: {outcome.stdout!r}"
    else:
        case = Case(COMMANDS[kind][0], f"flip-{kind}", tuple(argv), (valid_inputs.path(kind).name,))
        problems = contract_violations(case, outcome, before, snapshot(folder))
        assert not problems, f"{where}\n  " + "\n  ".join(problems) + f"\n  stderr: {outcome.stderr.strip()!r}"
