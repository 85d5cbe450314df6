"""``romanflow serve`` as a process: prints its base URL, answers, refuses bad arguments in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import requests


def test_serve_prints_url_and_answers(archive_data, tmp_path):
    arc, info = archive_data
    log = tmp_path / "access.log"
    proc = subprocess.Popen([sys.executable, "-m", "romanflow.cli", "serve", "--db", f"sqlite:///{info['root']}/archive.db",
                             "--port", "0", "--access-log", str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        r = requests.get(f"{url}api/health", timeout=30)
        assert r.status_code == 200 and r.json()["backend"] == "sqlite"
        r = requests.get(f"{url}sia/query", params={"MAXREC": 1}, timeout=30)
        assert r.status_code == 200 and b"QUERY_STATUS" in r.content
        r = requests.post(f"{url}api/ingest", json={"paths": ["l2"]}, timeout=30)
        assert r.status_code == 403  # no token: read-only
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert '"GET /api/health" 200' in log.read_text()


def test_serve_bad_arguments(tmp_path):
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "romanflow.cli", "serve", "--db", f"sqlite:///{tmp_path}/none/archive.db"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "romanflow serve: error:" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_serve_port_is_checked():
    from romanflow.cli import build_parser

    parser = build_parser()
    try:
        parser.parse_args(["serve", "--port", "70000"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("port 70000 accepted")


def test_listening_socket_turns_nagle_off_on_connections():
    """asyncio (under uvicorn) sets TCP_NODELAY on each accepted connection only when the listening socket
    names its protocol; with Nagle on, answers on kept-alive connections waited for delayed ACKs."""
    import asyncio
    import socket

    from romanflow.cli.serve import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    sock.listen(4)
    port = sock.getsockname()[1]
    seen = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            s = transport.get_extra_info("socket")
            seen.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main():
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.read()
            writer.close()

    asyncio.run(main())
    assert seen and seen[0] != 0


def test_listening_socket_refuses_a_used_port():
    import pytest

    from romanflow.cli.serve import listening_socket
    from romanflow.errors import ParameterError

    first = listening_socket("127.0.0.1", 0)
    first.listen(1)
    try:
        with pytest.raises(ParameterError, match="--port"):
            listening_socket("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()
