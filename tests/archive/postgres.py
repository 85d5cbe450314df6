"""A private PostgreSQL 15 cluster for tests: initdb + pg_ctl in a temporary folder, on a loopback port.

The server runs as the ``postgres`` OS user when the tests run as root (PostgreSQL refuses root), listens
on 127.0.0.1 only, trusts local connections, and every database it creates has the ``pg_sphere`` and
``q3c`` extensions. :class:`PrivatePostgres` is used by the session fixture ``postgres_url`` in
``tests/conftest.py``; :func:`new_database` gives a test a database of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

#: Where Debian installs PostgreSQL 15's server programs.
PG_BIN = Path(os.environ.get("ROMANFLOW_PG_BIN", "/usr/lib/postgresql/15/bin"))
EXTENSIONS = ("pg_sphere", "q3c")
_SERVERS: list = []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A PostgreSQL cluster living in a temporary folder for as long as this object is started."""

    def __init__(self):
        if not (PG_BIN / "initdb").is_file():
            raise RuntimeError(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing): run "
                               "scripts/install_system_packages.sh (make install)")
        self.folder = Path(tempfile.mkdtemp(prefix="romanflow-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.started = False

    def _run(self, *cmd, check=True):
        cmd = [str(c) for c in cmd]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> "PrivatePostgres":
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
                "-c full_page_writes=off -c synchronous_commit=off -c max_connections=60 -c shared_buffers=64MB")
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-o", opts, "-l", self.folder / "log", "-w", "-t", "60",
                  "start")
        self.started = True
        _SERVERS.append(self)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new database with the extensions; returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(self.url(name), autocommit=True) as conn:
            for ext in EXTENSIONS:
                conn.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)


def new_database() -> str:
    """URL of a fresh database on the session's private server (started by the ``postgres_url`` fixture)."""
    if not _SERVERS:
        raise RuntimeError("no private PostgreSQL server: request the postgres_url fixture first")
    return _SERVERS[-1].create_database()
