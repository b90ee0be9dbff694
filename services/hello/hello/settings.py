"""The service's settings file: an INI file with a `[hello]` section."""
import configparser
from dataclasses import dataclass

DEFAULTS = {"bind": "127.0.0.1", "port": "8080", "greeting": "hello", "drain": "10"}
MAX_DRAIN = 300


class SettingsError(Exception):
    """The settings file is missing or malformed; the message says where."""


@dataclass(frozen=True)
class Settings:
    """What the service reads from its settings file."""

    bind: str
    port: int
    greeting: str
    drain: float = 10.0  # seconds in-flight requests get to finish after SIGTERM


def load_settings(path):
    """Read and validate the settings file at `path`."""
    parser = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read settings file: {exc.strerror}") from exc
    except configparser.Error as exc:
        raise SettingsError(f"{path}: not a valid INI file: {exc.message}") from exc
    if not parser.has_section("hello"):
        raise SettingsError(f"{path}: missing section [hello]")
    section = parser["hello"]
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise SettingsError(
            f"{path}: [hello] has unknown key {unknown[0]!r}; expected one of "
            + ", ".join(sorted(DEFAULTS))
        )
    values = {**DEFAULTS, **dict(section)}
    port = values["port"]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{path}: [hello] port: expected a number 1-65535, got {port!r}")
    try:
        drain = float(values["drain"])
    except ValueError:
        drain = -1.0
    if not 0 <= drain <= MAX_DRAIN:  # also refuses nan
        raise SettingsError(f"{path}: [hello] drain: expected seconds from 0 to {MAX_DRAIN}, "
                            f"got {values['drain']!r}")
    return Settings(bind=values["bind"], port=int(port), greeting=values["greeting"],
                    drain=drain)
