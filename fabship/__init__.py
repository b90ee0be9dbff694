"""fabship: continuous deployment for Python services (gates, EC2 launch, SSH deploy).

Installed, the code lives under this one name: `fabship.deploy`, `fabship.ci`, the task
collection `fabship.tasks` (a project's fabfile imports it) and the templates fabship
renders itself (`fabship/templates/`, package data).
"""
from pathlib import Path

__version__ = "0.2.0"

# In fabship's own repository `deploy/` and `ci/` stay at the top (the repo's layout); the
# wheel maps them under this package (setup.cfg's package_dir). A source checkout finds
# them next to this directory, so `fabship.deploy` is that checkout's code there too.
_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "setup.cfg").is_file() and (_CHECKOUT / "deploy" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # pylint: disable=used-before-assignment
