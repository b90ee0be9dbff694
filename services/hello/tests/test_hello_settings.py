"""Settings file parsing and the release file."""
import json

import pytest

from hello.release import release_info
from hello.settings import Settings, SettingsError, load_settings


def write(tmp_path, text):
    path = tmp_path / "hello.conf"
    path.write_text(text)
    return path


def test_reads_all_keys(tmp_path):
    path = write(tmp_path, "[hello]\nbind = 0.0.0.0\nport = 9001\ngreeting = hi\n")
    assert load_settings(path) == Settings(bind="0.0.0.0", port=9001, greeting="hi")


def test_defaults(tmp_path):
    assert load_settings(write(tmp_path, "[hello]\n")) == Settings("127.0.0.1", 8080, "hello")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[other]\n", "missing section [hello]"),
        ("[hello]\nport = eighty\n", "port: expected a number 1-65535, got 'eighty'"),
        ("[hello]\nport = 70000\n", "port: expected a number 1-65535"),
        ("[hello]\ncolour = red\n", "unknown key 'colour'"),
        ("port = 1\n", "not a valid INI file"),
    ],
)
def test_malformed(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(tmp_path / "absent.conf")


def test_release_info_from_file(tmp_path):
    path = tmp_path / "release.json"
    path.write_text(json.dumps({"release": "r1", "commit": "c1", "other": 1}))
    assert release_info(path) == {"release": "r1", "commit": "c1"}


@pytest.mark.parametrize("content", [None, "not json", "[1, 2]"])
def test_release_info_outside_a_release_is_dev(tmp_path, content):
    path = tmp_path / "release.json"
    if content is not None:
        path.write_text(content)
    assert release_info(path) == {"release": "dev", "commit": "dev"}
