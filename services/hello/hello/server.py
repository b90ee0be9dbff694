"""Command line entry: parse arguments, load settings, serve.

The listening socket is inherited when the process manager holds it (so connections wait
in its backlog while a process restarts): systemd's socket activation (`LISTEN_FDS`,
fd 3) or supervisord's fcgi-program (fd 0, a listening TCP socket). Run by hand, the
service binds `bind:port` itself. On SIGTERM it stops accepting, lets the requests in
flight finish (at most `drain` seconds), then exits.
"""
import argparse
import asyncio
import os
import signal
import socket
import stat
import sys
import time

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from .app import make_app
from .release import release_info
from .settings import SettingsError, load_settings


def parse_args(argv):
    """Parse the command line; `--config` is required."""
    parser = argparse.ArgumentParser(prog="hello", description="The hello example service.")
    parser.add_argument("--config", required=True, help="path of the settings file (INI)")
    return parser.parse_args(argv)


SD_LISTEN_FDS_START = 3


def _listening(fd):
    """A socket object for fd when it is a listening TCP socket, else None."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6) \
            or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        return None
    return sock


def inherited(environ=os.environ):
    """(socket, who handed it over) from systemd or supervisord, or (None, None)."""
    if environ.get("LISTEN_PID") == str(os.getpid()) and environ.get("LISTEN_FDS", "0") != "0":
        sock = _listening(SD_LISTEN_FDS_START)
        if sock is not None:
            return sock, "systemd (LISTEN_FDS)"
    sock = _listening(0)
    return (sock, "supervisord (fd 0)") if sock is not None else (None, None)


ARRIVAL = 0.5  # seconds a connection accepted just before SIGTERM gets to send its request


async def drain(app, server, limit):
    """Let the requests in flight finish, at most `limit` seconds: first those of the
    connections accepted just before (their request may not be read yet), then the rest;
    idle connections are closed after."""
    deadline = time.monotonic() + limit
    await asyncio.sleep(min(ARRIVAL, limit))
    while app.settings["in_flight"][0] > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(server.close_all_connections(),
                               max(0.1, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        pass


async def serve(settings, info):
    """Listen (or take the inherited socket) and serve until SIGTERM or SIGINT."""
    app = make_app(settings, info)
    sock, source = inherited()
    sockets = [sock] if sock is not None else bind_sockets(settings.port, settings.bind)
    for each in sockets:
        each.setblocking(False)
    server = HTTPServer(app)
    server.add_sockets(sockets)
    where = source or f"{settings.bind}:{settings.port}"
    print(f"hello: serving release {info['release']} on {where}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.stop()  # no new connection; the manager keeps its copy of an inherited socket
    await drain(app, server, settings.drain)
    print(f"hello: stopped ({app.settings['in_flight'][0]} request(s) cut off)", flush=True)


def main(argv):
    """Run the service; exit 2 on a bad settings file."""
    args = parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"hello: error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings, release_info()))
    return 0
