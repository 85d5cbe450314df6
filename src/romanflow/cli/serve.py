"""``romanflow serve``: the archive's data services over HTTP (SIA v2, DataLink, SODA, cone search, TAP,
HATS, a JSON API and the viewer) under uvicorn."""

from __future__ import annotations

from romanflow.cli.options import add_command

DEFAULT_DB = "sqlite:///archive.db"


def _port(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port number") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: a port lies in 0..65535 (0: any free port)")
    return value


def _hats(text: str) -> tuple[str, str]:
    import argparse

    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=FOLDER")
    return name, folder


def register(subparsers) -> None:
    from romanflow.cli.options import positive_int

    p = add_command(subparsers, "serve", help="serve the archive over HTTP (IVOA services, HATS, viewer)",
                    description=__doc__.splitlines()[0])
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL",
                   help="archive database: sqlite:///DIR/archive.db (default sqlite:///archive.db) or "
                        "postgresql://user@host:port/db")
    p.add_argument("--root", metavar="DIR", help="archive root folder (required with PostgreSQL)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding the bearer token that allows writes (POST /api/ingest); read-only without")
    p.add_argument("--hats", type=_hats, action="append", default=[], metavar="NAME=DIR",
                   help="serve the HATS catalog in DIR at /hats/NAME (repeatable; ROOT/hats/* are served too)")
    p.add_argument("--access-log", metavar="FILE", help="append the access log to FILE (default: standard error)")
    p.add_argument("--max-rows", type=positive_int, default=100_000, help="most rows of any result")
    p.add_argument("--max-cutout", type=positive_int, default=4096, metavar="PIXELS",
                   help="largest cutout side in pixels (area bound PIXELS^2; default 4096)")
    p.add_argument("--query-timeout", type=positive_int, default=30, metavar="SECONDS",
                   help="TAP query time limit (default 30 s)")
    p.set_defaults(func=run)


def build_app(args):
    """The application for the parsed arguments."""
    from pathlib import Path

    from romanflow.archive import Archive
    from romanflow.errors import ParameterError
    from romanflow.services import ServiceConfig, ServiceLimits, create_app

    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise ParameterError("--token-file", args.token_file, exc.strerror or str(exc)) from None
        if len(token) < 16:
            raise ParameterError("--token-file", args.token_file, "the token must be at least 16 characters")
    for name, folder in args.hats:
        if not (Path(folder) / "properties").is_file() and not (Path(folder) / "hats.properties").is_file():
            raise ParameterError("--hats", f"{name}={folder}", "not a HATS catalog folder (no properties file)")
    archive = Archive.open(args.db, root=args.root, create=False)
    config = ServiceConfig(token=token, hats=dict(args.hats), access_log=args.access_log,
                           limits=ServiceLimits(max_rows=args.max_rows, max_cutout_pixels=args.max_cutout ** 2,
                                                query_timeout_s=float(args.query_timeout)))
    return create_app(archive, config)


def listening_socket(host: str, port: int):
    """A bound TCP socket for the server, Nagle's algorithm off on every connection it accepts.

    The protocol is named (``IPPROTO_TCP``) because asyncio turns Nagle off on accepted connections only
    for sockets that say so; with protocol 0 every answer on a kept-alive connection waited ~40 ms for the
    client's delayed ACK. Raises :class:`~romanflow.errors.ParameterError` when the address is unusable.
    """
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        from romanflow.errors import ParameterError

        sock.close()
        raise ParameterError("--port", port, f"cannot listen on {host}: {exc.strerror}") from None
    return sock


def run(args) -> int:
    import gc
    import logging
    import sys

    import uvicorn

    app = build_app(args)
    # the start-up heap (every imported module, those the handlers import first included) is moved out of
    # the collector's reach: a full collection otherwise walks it every few dozen queries and was the
    # slowest 1 % of the SIA answers
    import astropy.table  # noqa: F401
    import sqlalchemy  # noqa: F401

    gc.collect()
    gc.freeze()
    sock = listening_socket(args.host, args.port)
    sock.listen(2048)  # before the address is printed: a client that reads it may connect at once
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"http://{shown}:{port}/", flush=True)
    if not args.access_log:
        logging.getLogger("romanflow.services.access").setLevel(logging.INFO)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    sys.stdout.flush()
    return 0
