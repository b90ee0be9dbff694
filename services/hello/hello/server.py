"""Command line entry: parse arguments, load settings, serve."""
import argparse
import asyncio
import signal
import sys

from .app import make_app
from .release import release_info
from .settings import SettingsError, load_settings


def parse_args(argv):
    """Parse the command line; `--config` is required."""
    parser = argparse.ArgumentParser(prog="hello", description="The hello example service.")
    parser.add_argument("--config", required=True, help="path of the settings file (INI)")
    return parser.parse_args(argv)


async def serve(settings, info):
    """Listen and serve until SIGTERM or SIGINT."""
    app = make_app(settings, info)
    server = app.listen(settings.port, address=settings.bind)
    print(f"hello: serving release {info['release']} on {settings.bind}:{settings.port}",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.stop()


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
