"""`processes`, `zero_downtime`, `drain` and `listen`: defaults by manager, and the one
error each bad value gets (file, key, what was expected)."""
import pytest

from fabship.deploy.config import parse_services
from fabship.deploy.errors import ConfigError
from fabship.deploy.processconfig import ProcessSettings


def service(**keys):
    """A minimal service mapping with `keys` added."""
    return {"source": "s", "run": "r", "environments": {"t": {"hosts": ["u@h"]}}, **keys}


def parsed(**keys):
    """The ProcessSettings of that service."""
    return parse_services({"x": service(**keys)}, "f.yaml")["x"].processes


def test_defaults_are_zero_downtime_under_both_managers():
    """Zero downtime with 2 processes under supervisor and systemd alike; opting out: one
    process, restarted."""
    assert parsed() == ProcessSettings(2, True, 10.0, None)
    assert parsed(manager="systemd") == ProcessSettings(2, True, 10.0, None)
    assert parsed(manager="systemd", zero_downtime=False) == ProcessSettings(1, False, 10.0,
                                                                             None)
    assert parsed(zero_downtime=False) == ProcessSettings(1, False, 10.0, None)
    assert parsed(processes=4, drain=30, listen="0.0.0.0:{{ port }}") == ProcessSettings(
        4, True, 30.0, "0.0.0.0:{{ port }}")


@pytest.mark.parametrize("keys, message", [
    ({"zero_downtime": "yes"}, "services.x.zero_downtime: expected true or false, got 'yes'"),
    ({"processes": 1}, "services.x.processes: expected 2 or more with zero_downtime"),
    ({"processes": 65}, "services.x.processes: expected a whole number <= 64, got 65"),
    ({"zero_downtime": False, "processes": 2},
     "services.x.processes: expected 1 with zero_downtime: false"),
    ({"manager": "systemd", "processes": 1},
     "services.x.processes: expected 2 or more with zero_downtime"),
    ({"drain": -1}, "services.x.drain: expected a number >= 0, got -1"),
    ({"drain": float("nan")}, "services.x.drain: expected a number >= 0, got nan"),
    ({"listen": "[::1]:80"}, "services.x.listen: expected HOST:PORT"),
    ({"listen": "0.0.0.0"}, "services.x.listen: expected HOST:PORT"),
])
def test_a_bad_process_key_is_one_clear_error(keys, message):
    """Which file, which key, what was expected."""
    with pytest.raises(ConfigError) as err:
        parse_services({"x": service(**keys)}, "f.yaml")
    assert str(err.value).startswith("f.yaml: " + message), err.value
