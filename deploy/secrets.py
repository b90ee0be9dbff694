"""Secret values from the controller's environment, masked wherever they could print."""
from dataclasses import dataclass, field

from .errors import ConfigError

MASK = "********"


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
    return tuple(Secret(name, environ[name]) for name in names)


def mask(text, secrets):
    """`text` with every secret value replaced by the mask."""
    for secret in sorted(secrets, key=lambda s: -len(s.value)):
        text = text.replace(secret.value, MASK)
    return text


def holds_secret(text, secrets):
    """True when any secret value occurs in text."""
    return any(secret.value in text for secret in secrets)
