"""Fixtures of the archive tests: every archive test runs on SQLite and on a private PostgreSQL server."""

import sys
from pathlib import Path

import pytest

from romanflow.archive import Archive

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


@pytest.fixture
def open_archive(backend, request, tmp_path):
    """``open_archive(root)`` -> a new, empty Archive on this test's backend (closed at the end)."""
    opened = []

    def make(root=None, url=None):
        root = Path(root or tmp_path)
        if url is None:
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path / 'db' / 'archive.db'}"
            else:
                request.getfixturevalue("postgres_url")  # starts the session's private server
                url = sys.modules["romanflow_tests_postgres"].new_database()
        arc = Archive.open(url, root=root)
        opened.append(arc)
        return arc

    yield make
    for arc in opened:
        arc.close()


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory):
    """A finished small survey run (one detector, two exposures a few minutes apart, one filter): real
    L1, L2, registered L2, source tables, mosaic, outlier record, catalog. Tests must not modify it."""
    from small_run import run_small

    return run_small(tmp_path_factory.mktemp("archive_run") / "run")
