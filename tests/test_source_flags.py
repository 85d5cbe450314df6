"""The source-flag registry, its decode/encode helpers, and the pixel-flag helpers in dq."""

import ast
from pathlib import Path

import numpy as np
import pytest

from romanflow import dq, source_flags
from romanflow.source_flags import REGISTRY, SOURCE_FLAGS, decode, encode


def test_every_flag_is_one_distinct_bit_with_a_description():
    values = [flag.value for flag in REGISTRY]
    assert len(set(values)) == len(values) and values == sorted(values)
    assert all(v > 0 and v & (v - 1) == 0 for v in values)
    assert all(flag.name.isupper() and flag.description.endswith(".") for flag in REGISTRY)
    assert SOURCE_FLAGS == {flag.name: flag.value for flag in REGISTRY}
    for flag in REGISTRY:  # the module constants kernels use
        assert getattr(source_flags, flag.name) == flag.value
        # and the table of the module's documentation
        assert f"``{flag.name}``" in source_flags.__doc__ and f" {flag.value} " in source_flags.__doc__


def test_decode_and_encode_round_trip():
    assert decode(0) == [] and encode([]) == 0
    assert decode(np.int32(5)) == ["EDGE", "SATURATED"]
    assert encode("PSF_FIT_FAILED") == 8
    every = encode(SOURCE_FLAGS)
    assert decode(every) == list(SOURCE_FLAGS)
    for name, value in SOURCE_FLAGS.items():
        assert decode(value) == [name] and encode([name]) == value


def test_unknown_bits_and_names_are_errors():
    with pytest.raises(ValueError):
        decode(1 << 20)
    with pytest.raises(ValueError):
        decode(-1)
    with pytest.raises(ValueError):
        encode(["EDGE", "NO_SUCH_FLAG"])


def test_flag_users_take_their_bits_from_the_registry():
    from romanflow.astrometry.detect import FLAG_NAMES
    from romanflow.catalog.schema import PSF_FLAGS, WARNING_FLAGS, catalog_columns
    from romanflow.kernels.psf_fit import FIT_FLAGS

    for names in (FLAG_NAMES, FIT_FLAGS, PSF_FLAGS, WARNING_FLAGS):
        assert set(names) <= set(SOURCE_FLAGS)
    # on-disk values of the catalog's warning bits
    assert WARNING_FLAGS == {"EDGE": 1, "BLENDED": 2, "SATURATED": 4, "PSF_FIT_FAILED": 8, "LOW_SNR_KRON": 16}
    columns = {c.name: c for c in catalog_columns("skycell", ["f158"])}
    assert "16 LOW_SNR_KRON" in columns["warning_flags"].description
    assert "32 LEFT_BOX" in columns["psf_flags_f158"].description


def test_registry_is_a_base_module():
    tree = ast.parse(Path(source_flags.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {name for name in imported if name.startswith("romanflow")} <= {"romanflow.errors", "romanflow.bitmask"}


def test_pixel_flags_decode_and_encode():
    value = dq.DO_NOT_USE | dq.SATURATED | dq.REFERENCE_PIXEL
    assert dq.decode(np.uint32(value)) == ["DO_NOT_USE", "SATURATED", "REFERENCE_PIXEL"]
    assert dq.encode(["DO_NOT_USE", "SATURATED", "REFERENCE_PIXEL"]) == value
    assert dq.encode("JUMP_DET") == dq.JUMP_DET and dq.decode(0) == []
    with pytest.raises(ValueError):
        dq.decode(1 << 14)
    with pytest.raises(ValueError):
        dq.encode("NOT_A_FLAG")
