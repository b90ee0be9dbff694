"""`rollout:` settings (service, environment, command line) and the waves they make.

    rollout: {canary: 1, batch: 25%, max_fail: 0, pause: 0, parallel: 20}

`batch` and `max_fail` take a count or a percentage of the hosts deployed to. The canary
hosts (the first `canary` of the list) go first, alone; then batches of `batch` hosts.
"""
import math
import re
from dataclasses import dataclass, replace

from .errors import ConfigError

KEYS = ("canary", "batch", "max_fail", "pause", "parallel")
AMOUNT = re.compile(r"([0-9]{1,9})(%?)")
MAX_PAUSE = 3600
MAX_HOSTS = 100_000  # canary and parallel beyond any fleet are typos


@dataclass(frozen=True)
class Amount:
    """A count of hosts, or a percentage of them."""

    value: int
    percent: bool = False

    def of(self, total, round_up):
        """The count for a fleet of `total` hosts."""
        if not self.percent:
            return self.value
        exact = self.value * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)

    def __str__(self):
        return f"{self.value}{'%' if self.percent else ''}"


@dataclass(frozen=True)
class RolloutSettings:
    """How a deploy walks the fleet. The defaults are the documented ones."""

    canary: int = 1
    batch: Amount = Amount(25, True)
    max_fail: Amount = Amount(0)
    pause: float = 0.0
    parallel: int = 20

    def batch_size(self, total):
        """Hosts per batch (at least 1)."""
        return max(1, self.batch.of(total, round_up=True))

    def budget(self, total):
        """How many hosts may fail before the rollout stops and rolls back."""
        return self.max_fail.of(total, round_up=False)

    def shown(self):
        """The settings as JSON values, for events and the dry-run."""
        return {"canary": self.canary, "batch": str(self.batch),
                "max_fail": str(self.max_fail), "pause": self.pause,
                "parallel": self.parallel}


def waves(hosts, settings):
    """[[host, ...], ...]: the canary hosts alone, then batches, in the hosts' order."""
    hosts = list(hosts)
    canary = min(settings.canary, len(hosts))
    out = [hosts[:canary]] if canary else []
    size = settings.batch_size(len(hosts))
    out += [hosts[i:i + size] for i in range(canary, len(hosts), size)]
    return out


def _amount(value, where, low):
    """A count (int or digits) or `N%`; ConfigError naming `where` otherwise."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    found = AMOUNT.fullmatch(text) if isinstance(text, str) else None
    percent = bool(found and found.group(2))
    if not found or int(found.group(1)) < low or (percent and int(found.group(1)) > 100):
        raise ConfigError(f"{where}: expected a count of hosts >= {low} or a percentage "
                          f"({low}%-100%), got {str(value)[:40]!r}")
    return Amount(int(found.group(1)), percent)


def _count(value, where, low):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_HOSTS:
        raise ConfigError(f"{where}: expected a whole number from {low} to {MAX_HOSTS}, got "
                          f"{str(value)[:40]!r}")
    return value


def parse_rollout(raw, where, base=RolloutSettings()):
    """A `rollout:` mapping over `base` (the service's settings, for an environment).

    `where` names the file and key path, e.g. `fabric.yaml: services.hello.rollout`.
    """
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(KEYS)}, got {raw!r}")
    unknown = sorted(str(key) for key in raw if key not in KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of "
                          f"{', '.join(KEYS)}")
    changes = {}
    if "canary" in raw:
        changes["canary"] = _count(raw["canary"], f"{where}.canary", 0)
    if "batch" in raw:
        changes["batch"] = _amount(raw["batch"], f"{where}.batch", 1)
    if "max_fail" in raw:
        changes["max_fail"] = _amount(raw["max_fail"], f"{where}.max_fail", 0)
    if "parallel" in raw:
        changes["parallel"] = _count(raw["parallel"], f"{where}.parallel", 1)
    if "pause" in raw:
        pause = raw["pause"]
        if isinstance(pause, bool) or not isinstance(pause, (int, float)) \
                or not 0 <= pause <= MAX_PAUSE:
            raise ConfigError(f"{where}.pause: expected seconds between waves, 0-{MAX_PAUSE}, "
                              f"got {pause!r}")
        changes["pause"] = float(pause)
    return replace(base, **changes)


def with_options(settings, canary=None, batch=None, max_fail=None):
    """The command line's `--canary`, `--batch`, `--max-fail` over the config's."""
    changes = {}
    if canary is not None:
        changes["canary"] = _count(_digits(canary, "--canary"), "--canary", 0)
    if batch is not None:
        changes["batch"] = _amount(batch, "--batch", 1)
    if max_fail is not None:
        changes["max_fail"] = _amount(max_fail, "--max-fail", 0)
    return replace(settings, **changes)


def _digits(value, flag):
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value):
        return int(value)
    if isinstance(value, int):
        return value
    raise ConfigError(f"{flag}: expected a whole number >= 0, got {value!r}")
