"""Fixtures: a small archive and a real uvicorn server over it on a free loopback port."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from data import build_archive  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    """uvicorn serving ``app`` in a thread on 127.0.0.1."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def archive_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("services_archive")
    arc, info = build_archive(root)
    info["root"] = root
    yield arc, info
    arc.close()


@pytest.fixture(scope="session")
def access_log(tmp_path_factory):
    return tmp_path_factory.mktemp("services_log") / "access.log"


@pytest.fixture(scope="session")
def server(archive_data, access_log):
    from romanflow.services import ServiceConfig, ServiceLimits, create_app

    arc, info = archive_data
    config = ServiceConfig(token="s3cret-token", access_log=str(access_log),
                           limits=ServiceLimits(max_cutout_pixels=300 * 300, max_rows=1000, query_timeout_s=5.0))
    app = create_app(arc, config)
    with RunningServer(app) as running:
        running.info = info
        running.archive = arc
        yield running
