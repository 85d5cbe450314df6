"""Every romanflow error pickles, so an error raised in a worker reaches the parent unchanged."""

import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from romanflow import errors
from romanflow.errors import InputFileError, OutputExistsError, ParameterError, ReferenceSelectionError, RomanflowError

EXAMPLES = [
    RomanflowError("something is wrong"),
    InputFileError("/data/x_uncal.asdf", "not an ASDF file"),
    ParameterError("--size", "huge", "expected full, small or a number of pixels"),
    ReferenceSelectionError("no dark for WFI01"),
    OutputExistsError("/out/x_cal.asdf"),
]


def _error_classes(module):
    return {obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, RomanflowError)}


def test_examples_cover_every_class():
    assert {type(e) for e in EXAMPLES} == _error_classes(errors)


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip_keeps_class_message_and_fields(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_catalog_schema_error_pickles():
    from romanflow.catalog.schema import CatalogSchemaError

    error = CatalogSchemaError("column flux_f158 has unit Jy, expected nJy")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is CatalogSchemaError and str(copy) == str(error)


def test_parameter_error_is_also_a_value_error():
    error = ParameterError("science_size", -4, "must be positive")
    assert isinstance(error, ValueError)
    assert str(error) == "science_size=-4: must be positive"


def _raise_input_file_error(path):
    raise InputFileError(path, "no such file")


def test_error_raised_in_a_worker_process_arrives_as_itself():
    with ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_raise_input_file_error, "/nowhere/dark.asdf")
        with pytest.raises(InputFileError) as info:
            future.result()
    assert info.value.path == "/nowhere/dark.asdf"
    assert str(info.value) == "/nowhere/dark.asdf: no such file"
