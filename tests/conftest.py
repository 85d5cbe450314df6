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


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a database (pg_sphere and q3c created) on a private PostgreSQL 15 server started for this
    session (tests/archive/postgres.py); ``new_database()`` there gives a test a database of its own."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "romanflow_tests_postgres"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "archive" / "postgres.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    server = module.PrivatePostgres().start()
    try:
        yield server.create_database("romanflow")
    finally:
        server.stop()
