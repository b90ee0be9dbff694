"""Masking free text by value: transformed secrets are caught, short ones never garble."""
import base64
import urllib.parse

import pytest

from fabship.deploy.errors import ConfigError
from fabship.deploy.secrets import (MASK, Secret, holds_secret, mask, read_secrets, secrets_set,
                            variants)

TOKEN = Secret("TOKEN", "s3cr3t/Value+x")


@pytest.mark.parametrize("form", [
    "s3cr3t/Value+x", "S3CR3T/VALUE+X", "s3cr3t/value+x",
    base64.b64encode(b"s3cr3t/Value+x").decode(),
    base64.b64encode(b"s3cr3t/Value+x").decode().rstrip("="),
    base64.urlsafe_b64encode(b"s3cr3t/Value+x").decode(),
    urllib.parse.quote("s3cr3t/Value+x", safe=""), urllib.parse.quote_plus("s3cr3t/Value+x"),
])
def test_transformed_secrets_are_masked(form):
    """What upper, lower, base64 and urlencode filters make of a secret is masked too."""
    assert mask(f"db said: {form}!", (TOKEN,)) == f"db said: {MASK}!"
    assert holds_secret(form, (TOKEN,))


def test_json_and_html_escapes_are_masked():
    """A value quoted by json.dumps or html-escaped (as an app may echo it)."""
    quoted = Secret("Q", 'ab"cd<ef>')
    assert mask('{"v": "ab\\"cd<ef>"} ab&quot;cd&lt;ef&gt;', (quoted,)) == (
        '{"v": "' + MASK + '"} ' + MASK)


@pytest.mark.parametrize("value", ["1", "ab"])
def test_one_or_two_character_secrets_never_garble_output(value):
    """Replacing every `1` or `ab` would garble every line: such values are not searched."""
    text = "round trip 1 of 2: absent tab labs ab 1"
    assert mask(text, (Secret("S", value),)) == text
    assert not holds_secret(text, (Secret("S", value),))


def test_short_secrets_are_masked_only_as_whole_words():
    """3 to 5 characters: `pass` is masked alone, never inside `password`."""
    short = Secret("S", "pass")
    assert mask("password=pass; bypass pass.", (short,)) == (
        f"password={MASK}; bypass {MASK}.")


def test_variants_are_longest_first_and_distinct():
    """The alternation tries the longest form first, so no form is masked half."""
    forms = variants("a/b c")
    assert len(forms) == len(set(forms))
    assert [len(f) for f in forms] == sorted((len(f) for f in forms), reverse=True)
    assert {"a/b c", "A/B C", "a%2Fb%20c", "a/b%20c", "a%2Fb+c"} <= set(forms)


def test_a_secret_that_is_not_utf8_is_a_config_error():
    """Undecodable bytes in the environment (surrogate escapes) cannot reach a host file."""
    environ = {"TOKEN": "ok\udcff"}
    with pytest.raises(ConfigError) as err:
        read_secrets(("TOKEN",), environ, "fabric.yaml: services.app.secret_env")
    assert str(err.value) == ("fabric.yaml: services.app.secret_env: environment variable "
                              "TOKEN is not valid UTF-8 text")


def test_secrets_set_reads_the_exported_ones_and_skips_the_rest():
    """For rollback/status/history: missing or empty is fine, set ones are masked."""
    environ = {"A": "alpha-value", "B": "", "D": "delta-value"}
    assert secrets_set(("A", "B", "C", "D"), environ, "x") == (
        Secret("A", "alpha-value"), Secret("D", "delta-value"))
    assert not secrets_set(("B", "C"), environ, "x")
    assert not secrets_set((), {}, "x")
    assert mask("alpha-value delta-value", secrets_set(("A", "D"), environ, "x")) == (
        f"{MASK} {MASK}")


def test_secrets_set_refuses_a_value_that_is_not_utf8():
    """As read_secrets: a set value that is not UTF-8 text is a ConfigError naming it."""
    with pytest.raises(ConfigError) as caught:
        secrets_set(("A", "BAD"), {"A": "fine-value", "BAD": "x\udcff"},
                    "fabric.yaml: services.hello.secret_env")
    assert str(caught.value) == ("fabric.yaml: services.hello.secret_env: environment "
                                 "variable BAD is not valid UTF-8 text")
