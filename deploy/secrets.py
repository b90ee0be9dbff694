"""Secret values from the controller's environment, masked wherever they could print.

Two kinds of masking. Whatever fabship renders (files, plans) is rendered a second time
with each secret replaced by the mask before any filter sees it: exact, whatever the
template does. Free text from elsewhere (host output, error text) is masked by value:
the value and what common filters turn it into (upper/lower case, base64, URL and JSON
escapes). A value shorter than MIN_FREE characters is masked only where it stands as a
whole word, and one shorter than MIN_WORD is not searched for at all: replacing every
`1` or `ab` would garble every line.
"""
import base64
import functools
import html
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field

from .errors import ConfigError

MASK = "********"
MIN_WORD, MIN_FREE = 3, 6


@dataclass(frozen=True)
class Secret:
    """A named secret; str() and repr() never show the value."""

    name: str
    value: str = field(repr=False)

    def __str__(self):
        return MASK


def read_secrets(names, environ, where):
    """Secret objects for the variable names; a missing one is a ConfigError."""
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise ConfigError(f"{where}: environment variable {missing[0]} is not set "
                          "(or empty); export it before deploying")
    for name in names:
        try:
            environ[name].encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"{where}: environment variable {name} is not valid UTF-8 "
                              "text") from None
    return tuple(Secret(name, environ[name]) for name in names)


def variants(value):
    """The value and the forms common filters give it, longest first."""
    raw = value.encode("utf-8", "surrogatepass")
    forms = {value, value.upper(), value.lower(), html.escape(value),
             json.dumps(value)[1:-1], urllib.parse.quote(value, safe=""),
             urllib.parse.quote(value), urllib.parse.quote_plus(value)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(raw).decode()
        forms |= {text, text.rstrip("=")}
    return sorted(forms, key=lambda form: (-len(form), form))


@functools.lru_cache(maxsize=16)
def _pattern(secrets):
    parts = []
    for secret in secrets:
        if len(secret.value) < MIN_WORD:
            continue
        for form in variants(secret.value):
            escaped = re.escape(form)
            parts.append((len(form), escaped if len(secret.value) >= MIN_FREE else
                          rf"(?<![\w]){escaped}(?![\w])"))
    if not parts:
        return None
    return re.compile("|".join(p for _, p in sorted(parts, key=lambda part: -part[0])))


def mask(text, secrets):
    """`text` with every secret value (and its common transforms) replaced by the mask."""
    pattern = _pattern(tuple(secrets))
    return pattern.sub(MASK, text) if pattern else text


def holds_secret(text, secrets):
    """True when a secret value (or a common transform of it) occurs in text."""
    pattern = _pattern(tuple(secrets))
    return bool(pattern and pattern.search(text))


def secrets_set(names, environ, where):
    """Secret objects for the variables that are set (and not empty); the others are skipped.

    For the commands that need no secret but may print one a host echoes (rollback,
    status, history): what the deployer exported is masked. A value that is not UTF-8
    text is a ConfigError naming the variable, as in read_secrets.
    """
    return read_secrets(tuple(name for name in names if environ.get(name)), environ, where)


def known_secrets(project, service, environ=None):
    """The service's secrets that are set in the environment (a missing one is fine)."""
    return secrets_set(service.secret_env, os.environ if environ is None else environ,
                       f"{project.source}: services.{service.name}.secret_env")
