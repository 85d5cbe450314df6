"""Test-wide settings: the embedded reference store lives in a temporary folder, never in the user's cache."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def reference_store_in_tmp(tmp_path_factory):
    previous = os.environ.get("ROMANFLOW_REFDATA")
    os.environ["ROMANFLOW_REFDATA"] = str(tmp_path_factory.mktemp("refdata"))
    yield
    if previous is None:
        os.environ.pop("ROMANFLOW_REFDATA", None)
    else:
        os.environ["ROMANFLOW_REFDATA"] = previous
