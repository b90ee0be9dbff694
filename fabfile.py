"""This repository's tasks: fabship's own collection, imported as any project's fabfile
imports it (`fabship init` writes the same line)."""
from fabship.tasks import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import
