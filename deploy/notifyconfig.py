"""`notify:` settings: the webhooks a deploy's start and outcome are posted to.

    notify:
      webhooks: [{url: https://hooks.example.com/deploys, token_env: DEPLOY_HOOK_TOKEN}]
      events: [started, succeeded, failed, rolled_back]
      timeout: 5
      retries: 4
      max_time: 30

Every error is a ConfigError naming the file and the key path. A URL is never echoed
whole: its user info and query string (which may carry a key) are hidden.
"""
import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigError
from .events import DEPLOY_OUTCOMES
from .reader import ENV_NAME

KEYS = ("webhooks", "events", "timeout", "retries", "max_time")
WEBHOOK_KEYS = ("url", "token_env")
EVENTS = ("started",) + DEPLOY_OUTCOMES
DEFAULT_EVENTS = ("started", "succeeded", "failed", "rolled_back")
PRINTABLE = re.compile(r"[!-~]+")  # printable ASCII, no spaces: percent-encode the rest
MAX_TIMEOUT, MAX_TIME, MAX_RETRIES = 300, 3600, 50


@dataclass(frozen=True)
class Webhook:
    """One URL to POST to; `token_env` names the variable holding its bearer token."""

    url: str
    token_env: str | None = None

    @property
    def public(self):
        """scheme://host:port/...: the URL as logs show it. No path, query or user info:
        many webhooks (Slack, Discord, Teams) carry their secret in the path."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/..."


@dataclass(frozen=True)
class NotifySettings:
    """Where and what to post, and how long one event may take per webhook."""

    webhooks: tuple[Webhook, ...]
    events: tuple[str, ...] = DEFAULT_EVENTS
    timeout: float = 5.0  # seconds per attempt (connect and wait for the answer)
    retries: int = 4  # after the first attempt
    max_time: float = 30.0  # seconds for all attempts of one event, backoff included
    backoff: float = 0.5  # urllib3's backoff_factor (and jitter); not a config key


def hidden(url):
    """`url` with its user info and query string hidden, for error messages."""
    shown = re.sub(r"^([^:/?#]*://)[^?#]*@", r"\1***@", url)  # to the last @
    return re.sub(r"\?.*", "?...", shown, flags=re.DOTALL)


def parse_url(reader, value, path):
    """An http(s) URL of printable ASCII, with a host and no credentials."""
    if not isinstance(value, str) or not value:
        reader.fail(path, "an http:// or https:// URL", value)
    shown = hidden(value)
    if not PRINTABLE.fullmatch(value):
        reader.fail(path, "a URL of printable ASCII without spaces or control characters "
                    "(percent-encode the rest)", shown)
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https"):
        reader.fail(path, "an http:// or https:// URL", shown)
    if "@" in parts.netloc:
        reader.fail(path, "a URL without credentials (put a bearer token in token_env)",
                    shown, "user info (user:password@)")
    if not parts.hostname or not port_ok:
        reader.fail(path, "an http:// or https:// URL with a host (and a port 1-65535)",
                    shown)
    return value


def seconds(reader, value, path, high):
    """A number of seconds > 0 and <= high."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0 < value <= high or not math.isfinite(value):  # bound first: a
        # huge int is out of range before isfinite would overflow on it
        reader.fail(path, f"a number of seconds > 0 and <= {high}", value)
    return float(value)


def parse_events(reader, value, path):
    """The event names to post, each once, in the order given."""
    names = reader.listing(value, path)
    if not names:
        reader.fail(path, f"at least one of {', '.join(EVENTS)} (or no notify: at all)",
                    names)
    for index, name in enumerate(names):
        if name not in EVENTS:
            reader.fail(f"{path}[{index}]", f"one of {', '.join(EVENTS)}", name)
    return tuple(dict.fromkeys(names))


def parse_webhook(reader, raw, path):
    """One entry of `webhooks:`."""
    reader.mapping(raw, path, WEBHOOK_KEYS)
    if "url" not in raw:
        raise ConfigError(f"{reader.source}: {path}.url: required (an http:// or https:// "
                          "URL)")
    token_env = raw.get("token_env")
    if token_env is not None:
        reader.text(token_env, f"{path}.token_env", ENV_NAME,
                    "an environment variable name (A-Z, 0-9, _)")
    return Webhook(parse_url(reader, raw["url"], f"{path}.url"), token_env)


def parse_notify(reader, raw, path):
    """The `notify:` mapping at `path` -> NotifySettings; None when there is none."""
    if raw is None:
        return None
    reader.mapping(raw, path, KEYS)
    hooks = reader.listing(raw.get("webhooks", []), f"{path}.webhooks")
    if not hooks:
        reader.fail(f"{path}.webhooks", "at least one webhook ({url: ...})", hooks)
    default = NotifySettings(())
    return NotifySettings(
        webhooks=tuple(parse_webhook(reader, hook, f"{path}.webhooks[{index}]")
                       for index, hook in enumerate(hooks)),
        events=parse_events(reader, raw.get("events", list(DEFAULT_EVENTS)),
                            f"{path}.events"),
        timeout=seconds(reader, raw.get("timeout", default.timeout), f"{path}.timeout",
                        MAX_TIMEOUT),
        retries=reader.number(raw.get("retries", default.retries), f"{path}.retries", 0,
                              int, high=MAX_RETRIES),
        max_time=seconds(reader, raw.get("max_time", default.max_time), f"{path}.max_time",
                         MAX_TIME))
