"""Rollout settings, the waves they make, `--limit`, and the connection pool's bound."""
import threading
import time

import pytest

from fabship.deploy.config import parse_services
from fabship.deploy.errors import ConfigError
from fabship.deploy.hosts import parse_host
from fabship.deploy.pool import Pool
from fabship.deploy.rolloutconfig import Amount, RolloutSettings, parse_rollout, waves, with_options
from fabship.deploy.target import limit, select

HOSTS = [f"h{i}" for i in range(1, 11)]


def test_defaults_are_the_documented_ones():
    """No `rollout:`: one canary, then batches of a quarter of the fleet, no failure."""
    settings = parse_rollout(None, "fabric.yaml: services.a.rollout")
    assert settings == RolloutSettings(1, Amount(25, True), Amount(0), 0.0, 20)
    assert waves(HOSTS, settings) == [["h1"], ["h2", "h3", "h4"], ["h5", "h6", "h7"],
                                      ["h8", "h9", "h10"]]
    assert settings.budget(10) == 0


@pytest.mark.parametrize("raw, expected", [
    ({"canary": 0, "batch": "100%"}, [HOSTS]),
    ({"canary": 2, "batch": 3}, [["h1", "h2"], ["h3", "h4", "h5"], ["h6", "h7", "h8"],
                                 ["h9", "h10"]]),
    ({"canary": 0, "batch": "1%"}, [[h] for h in HOSTS]),
    ({"canary": 12, "batch": 1}, [HOSTS]),
    ({"canary": 1, "batch": "50%"}, [["h1"], HOSTS[1:6], HOSTS[6:]]),
])
def test_waves_follow_canary_then_batches_in_host_order(raw, expected):
    """Every host exactly once, the canary first and alone, batches rounded up."""
    assert waves(HOSTS, parse_rollout(raw, "f")) == expected


def test_max_fail_takes_a_count_or_a_percentage_rounded_down():
    """max_fail 25% of 10 hosts tolerates 2 failures; a count is taken as is."""
    assert parse_rollout({"max_fail": "25%"}, "f").budget(10) == 2
    assert parse_rollout({"max_fail": 3}, "f").budget(10) == 3
    assert parse_rollout({"max_fail": "9%"}, "f").budget(10) == 0


def test_command_line_overrides_the_config():
    """--canary, --batch, --max-fail win over the config's keys; the rest stays."""
    base = parse_rollout({"canary": 2, "pause": 5, "parallel": 4}, "f")
    chosen = with_options(base, canary="0", batch="50%", max_fail="1")
    assert chosen == RolloutSettings(0, Amount(50, True), Amount(1), 5.0, 4)


@pytest.mark.parametrize("raw, message", [
    ({"batch": 0}, "f.batch: expected a count of hosts >= 1 or a percentage"),
    ({"batch": "0%"}, "f.batch: expected"),
    ({"batch": "101%"}, "f.batch: expected"),
    ({"batch": "ten"}, "f.batch: expected"),
    ({"max_fail": -1}, "f.max_fail: expected a count of hosts >= 0"),
    ({"max_fail": True}, "f.max_fail: expected"),
    ({"canary": "1"}, "f.canary: expected a whole number from 0 to 100000, got '1'"),
    ({"parallel": 0}, "f.parallel: expected a whole number from 1 to 100000"),
    ({"parallel": 10 ** 400}, "f.parallel: expected a whole number from 1 to 100000"),
    ({"batch": 10 ** 400}, "f.batch: expected a count of hosts >= 1"),
    ({"pause": -1}, "f.pause: expected seconds between waves"),
    ({"pause": "1s"}, "f.pause: expected"),
    ({"speed": 2}, "f: unknown key(s) speed"),
    ("fast", "f: expected a mapping of canary, batch, max_fail, pause, parallel"),
])
def test_bad_settings_name_the_key(raw, message):
    """Each bad value is one error naming the file and key."""
    with pytest.raises(ConfigError) as error:
        parse_rollout(raw, "f")
    assert message in str(error.value)


@pytest.mark.parametrize("options, message", [
    ({"canary": "-1"}, "--canary: expected a whole number >= 0"),
    ({"canary": "1" * 30}, "--canary: expected a whole number"),
    ({"batch": "0"}, "--batch: expected a count of hosts >= 1"),
    ({"max_fail": "x%"}, "--max-fail: expected"),
])
def test_bad_options_name_the_option(options, message):
    """A bad --canary/--batch/--max-fail names the option."""
    with pytest.raises(ConfigError, match=message):
        with_options(RolloutSettings(), **options)


def _services(rollout_env=None):
    env = {"hosts": ["me@10.0.0.1", "me@10.0.0.2:2222", "me@[::1]:22"]}
    if rollout_env is not None:
        env["rollout"] = rollout_env
    return parse_services({"a": {"source": "a", "run": "x", "rollout": {"canary": 2},
                                 "environments": {"prod": env}}}, "fabric.yaml")


def test_an_environment_overrides_the_services_rollout_key_by_key():
    """The environment's keys win; the service's others stay."""
    target = select(_services({"batch": 1}), env="prod")
    assert target.rollout == RolloutSettings(2, Amount(1), Amount(0), 0.0, 20)
    with pytest.raises(ConfigError, match=r"services.a.environments.prod.rollout.batch"):
        _services({"batch": "x"})


def test_limit_picks_hosts_by_any_of_their_names_in_config_order():
    """--limit takes the address as listed, or without user/port; order is the config's."""
    target = select(_services(), env="prod")
    chosen = limit(target, "[::1]:22, 10.0.0.1", "fabric.yaml: hosts")
    assert [h.address for h in chosen.hosts] == ["me@10.0.0.1", "me@[::1]:22"]
    assert limit(target, "me@10.0.0.2:2222", "w").hosts == (parse_host("me@10.0.0.2:2222"),)


@pytest.mark.parametrize("spec, message", [
    ("10.9.9.9", "'10.9.9.9' matches no host of w; the hosts: me@10.0.0.1"),
    ("", "expected HOST"),
    (" , ", "expected HOST"),
])
def test_limit_refuses_unknown_hosts(spec, message):
    """An unknown host is an error listing the known ones; nothing is deployed."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        limit(select(_services(), env="prod"), spec, "w")


class _Conn:  # pylint: disable=too-few-public-methods
    # a stand-in: the pool's bound is its own logic (counted at real hosts too)
    open_now, most = 0, 0
    lock = threading.Lock()

    def __init__(self):
        with _Conn.lock:
            _Conn.open_now += 1
            _Conn.most = max(_Conn.most, _Conn.open_now)
        self.broken = None

    def close(self):
        """Closed: one fewer open."""
        with _Conn.lock:
            _Conn.open_now -= 1


def test_pool_never_holds_more_than_its_limit_and_reuses_connections():
    """30 hosts through a pool of 4, from 8 threads: at most 4 open; reuse when idle."""
    opened = []
    pool = Pool(lambda host: opened.append(host) or _Conn(), 4)
    hosts = [parse_host(f"h{i}") for i in range(30)]

    def work(host):
        with pool.use(host):
            time.sleep(0.01)
    threads = [threading.Thread(target=lambda i=i: [work(h) for h in hosts[i::8]])
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _Conn.most <= 4 and len(opened) == 30
    idle = next(h for h in hosts if h.address in pool.idle)
    with pool.use(idle):
        pass
    assert len(opened) == 30  # still open from before: reused
    pool.close()
    assert _Conn.open_now == 0
