"""The `fabship` command: `fabship init` (the gates are `fabship-ci`, deploys `fab`)."""
import argparse
import sys
from pathlib import Path

from . import __version__
from .scaffold import InitError, init


def parser():
    """fabship's argument parser."""
    top = argparse.ArgumentParser(prog="fabship", description="Continuous deployment for "
                                  "Python services: gates (fabship-ci), then `fab service "
                                  "deploy` from the project's fabfile.")
    top.add_argument("--version", action="version", version=f"fabship {__version__}")
    commands = top.add_subparsers(dest="command", required=True)
    start = commands.add_parser("init", help="scaffold fabship into this git repository",
                                description="Write fabfile.py, fabric.yaml, the gate "
                                "settings, a Jenkinsfile and an example template; never "
                                "overwrite a file unless --force.")
    start.add_argument("--service", help="service name (default: from the directory name)")
    start.add_argument("--source", help="directory shipped (default: src/ if any, else .)")
    start.add_argument("--force", action="store_true", help="overwrite existing files")
    return top


def main(argv=None):
    """Entry point of the `fabship` console script; returns the exit code."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        init(Path.cwd(), args.service, args.source, args.force)
    except InitError as exc:
        print(f"fabship init: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fabship init: error: {exc.filename or ''}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    except ValueError as exc:  # a file it reads is not text, say
        print(f"fabship init: error: {exc}", file=sys.stderr)
        return 2
    return 0
