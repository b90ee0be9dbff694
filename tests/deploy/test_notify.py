"""Webhook notifications: real HTTP servers on loopback, urllib3 as it is, `notify:` errors."""
import json
import re
import socket
import threading
import time
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fabship.deploy.errors import ConfigError
from fabship.deploy.events import EventBus
from fabship.deploy.notify import Notifier
from fabship.deploy.notifyconfig import NotifySettings, Webhook, parse_notify
from fabship.deploy.reader import Reader
from fabship.deploy.secrets import Secret

CONTEXT = {"service": "hello", "environment": "staging", "commit": "abc123",
           "deployer": "ann@box"}
HOSTS = ["10.0.0.5", "10.0.0.6"]
Request = namedtuple("Request", "at path headers body")


class Hook:
    """A webhook on 127.0.0.1 answering its scripted (status, headers) replies, then 200."""

    def __init__(self, replies=()):
        self.replies, self.requests = list(replies), []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            """Records each POST and answers the next scripted reply."""

            def do_POST(self):  # pylint: disable=invalid-name
                """One request: recorded, answered."""
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append(Request(time.monotonic(), self.path,
                                             dict(self.headers), body))
                status, headers = hook.replies.pop(0) if hook.replies else (200, {})
                self.send_response(status)
                for name, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(name, value)
                self.end_headers()

            def log_message(self, *args):  # pylint: disable=arguments-differ
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/deploys"
        self.public = shown(self.url)

    def payloads(self):
        """The JSON bodies received, in order."""
        return [json.loads(request.body) for request in self.requests]

    def close(self):
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def shown(url):
    """A webhook's URL as logs show it: scheme, host and port only (a Slack or Discord
    webhook's secret is its path)."""
    return re.match(r"[a-z]+://[^/?#]+", url).group(0) + "/..."


@pytest.fixture(name="hook")
def hook_fixture():
    """Factory of loopback webhooks, all stopped after the test."""
    hooks = []

    def make(replies=()):
        hooks.append(Hook(replies))
        return hooks[-1]
    yield make
    for hook in hooks:
        hook.close()


@pytest.fixture(name="silent")
def silent_fixture():
    """A URL whose server accepts TCP connections (the kernel's backlog) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=32)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    listener.close()


def settings_for(url, token_env=None, **overrides):
    """Fast settings: small timeouts and backoff."""
    values = {"timeout": 1.0, "retries": 4, "max_time": 5.0, "backoff": 0.01, **overrides}
    return NotifySettings((Webhook(url, token_env),), **values)


def notifier_for(settings, environ=None):
    """A Notifier with its log lines collected, and an EventBus that feeds it."""
    lines = []
    notifier = Notifier(settings, CONTEXT, environ or {}, lines.append)
    bus = EventBus("20240501-120000-abc123", (Secret("DB_PASSWORD", "hunter2secret"),),
                   [notifier])
    return notifier, bus, lines


def deploy_events(bus, outcome="failed", secret="x"):
    """A started and a finished event, as the deploy emits them."""
    bus.emit("started", service="hello", environment="staging", commit="abc123",
             deployer="ann@box", hosts=HOSTS, waves=[HOSTS], settings={"note": secret})
    bus.emit("stage", host=HOSTS[0], stage="lock")
    bus.emit("finished", outcome=outcome, duration=12.5,
             hosts={HOSTS[0]: "deployed", HOSTS[1]: "failed"}, failed=[HOSTS[1]],
             reason=f"health check said {secret}")


def test_payload_and_bearer_token_reach_the_webhook(hook):
    """The chat bot gets one JSON object per event, authenticated with the token."""
    server = hook()
    notifier, bus, lines = notifier_for(settings_for(server.url, "HOOK_TOKEN"),
                                        {"HOOK_TOKEN": "tok-123"})
    deploy_events(bus)
    notifier.close(10)
    assert not lines
    assert [request.path for request in server.requests] == ["/hooks/deploys"] * 2
    for request in server.requests:
        assert request.headers["Authorization"] == "Bearer tok-123"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"] == "fabship"
    started, finished = server.payloads()
    common = {**CONTEXT, "release": "20240501-120000-abc123", "hosts": HOSTS}
    assert started == {**common, "event": "started", "outcome": None, "duration": None,
                       "failed_hosts": [], "time": started["time"]}
    assert finished == {**common, "event": "failed", "outcome": "failed", "duration": 12.5,
                        "failed_hosts": [HOSTS[1]], "time": finished["time"]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", finished["time"])


def test_a_secret_never_reaches_the_webhook(hook):
    """A secret in event data (hosts, reasons, settings) is in no request's body or header."""
    server = hook()
    notifier, bus, _ = notifier_for(settings_for(server.url))
    bus.emit("started", hosts=["hunter2secret.example.com"], settings={"k": "hunter2secret"})
    bus.emit("finished", outcome="failed", duration=1, failed=["hunter2secret.example.com"],
             reason="hunter2secret", hosts={"hunter2secret.example.com": "failed"})
    notifier.close(10)
    assert len(server.requests) == 2
    for request in server.requests:
        assert "hunter2secret" not in request.body.decode() + json.dumps(request.headers)
    assert server.payloads()[1]["failed_hosts"] == ["********.example.com"]


def test_two_500s_then_200_is_delivered_once(hook):
    """A webhook that hiccups twice still gets the event, exactly once, and nothing is logged."""
    server = hook([(500, {}), (500, {})])
    notifier, bus, lines = notifier_for(settings_for(server.url, events=("failed",)))
    deploy_events(bus)
    notifier.close(10)
    assert len(server.requests) == 3
    assert len({request.body for request in server.requests}) == 1
    assert not lines


def test_429_waits_for_retry_after(hook):
    """A rate-limited webhook is posted again after the second its Retry-After asks for."""
    server = hook([(429, {"Retry-After": "1"})])
    notifier, bus, lines = notifier_for(settings_for(server.url, events=("failed",)))
    deploy_events(bus)
    notifier.close(10)
    assert len(server.requests) == 2
    assert server.requests[1].at - server.requests[0].at >= 0.9
    assert not lines


@pytest.mark.parametrize("after", ["86400", "9" * 5000, "Fri, 31 Dec 2100 23:59:59 GMT"])
def test_a_huge_retry_after_gives_up_at_once(hook, after):
    """A Retry-After beyond max_time is not waited for: the give-up is logged right away."""
    server = hook([(429, {"Retry-After": after})] * 9)
    notifier, bus, lines = notifier_for(settings_for(server.url, events=("failed",)))
    began = time.monotonic()
    deploy_events(bus)
    notifier.close(10)
    assert time.monotonic() - began < 5.0  # max_time
    if after.startswith("9999"):  # not a number urllib3 can read: backoff, then give up
        assert len(server.requests) == 5
    else:
        assert len(server.requests) == 1
        assert "Retry-After" in lines[0]
    assert lines[0].startswith(f"notify: {server.public} gave up on 'failed' after ")


def test_a_silent_webhook_is_given_up_within_max_time(silent):
    """A webhook that never answers costs the deploy nothing: emit returns at once, the
    give-up is logged within max_time, and close returns then."""
    notifier, bus, lines = notifier_for(settings_for(silent, timeout=0.3, retries=10,
                                                     max_time=1.2))
    began = time.monotonic()
    bus.emit("started", hosts=HOSTS)
    assert not lines  # returned before the first attempt could even time out
    notifier.close(10)
    assert time.monotonic() - began < 1.2 + 1.0
    assert len(lines) == 1
    assert lines[0].startswith(f"notify: {shown(silent)} gave up on 'started' after ")
    assert "no time left within max_time" in lines[0]


def test_close_abandons_a_post_still_pending(silent):
    """The deploy's end waits for webhooks at most the time it gives close(), then says so."""
    notifier, bus, lines = notifier_for(settings_for(silent, timeout=5, max_time=5))
    deploy_events(bus)
    began = time.monotonic()
    notifier.close(0.3)
    assert time.monotonic() - began < 0.3 + 1.0
    assert lines == ["notify: 2 webhook post(s) still pending after 0.3s; abandoned"]
    bus.emit("started", hosts=HOSTS)  # after close: ignored, nothing raised


def test_a_webhook_that_always_fails_is_logged_without_token_or_query(hook):
    """A broken webhook is one log line per event, naming the URL without its query
    string and without the token; the deploy sees no exception."""
    server = hook([(500, {})] * 9)
    notifier, bus, lines = notifier_for(
        settings_for(server.url + "?key=querykey42", "HOOK_TOKEN", retries=2,
                     events=("failed",)), {"HOOK_TOKEN": "tok-123"})
    deploy_events(bus)
    notifier.close(10)
    assert len(server.requests) == 3
    assert server.requests[0].path == "/hooks/deploys?key=querykey42"
    assert lines == [f"notify: {server.public} gave up on 'failed' after 3 attempts: "
                     "too many 500 error responses"]


def test_a_refused_connection_or_4xx_or_redirect_is_logged(hook):
    """Nothing listening, a 404, a redirect elsewhere: each logged, none followed or raised."""
    gone = hook()
    gone.close()
    missing, moved = hook([(404, {})]), hook([(302, {"Location": "http://example.com/"})])
    notifier, bus, lines = notifier_for(NotifySettings(
        tuple(Webhook(server.url) for server in (gone, missing, moved)), ("started",),
        timeout=1, retries=2, max_time=5, backoff=0.01))
    bus.emit("started", hosts=HOSTS)
    notifier.close(10)
    assert (len(missing.requests), len(moved.requests)) == (1, 1)
    assert lines[0].startswith(f"notify: {gone.public} gave up on 'started' after 3 attempts: ")
    assert lines[1:] == [
        f"notify: {missing.public} gave up on 'started' after 1 attempt: HTTP 404 (not retried)",
        f"notify: {moved.public} gave up on 'started' after 1 attempt: HTTP 302 (not retried)"]


def test_only_the_listed_events_are_posted(hook):
    """With `events: [failed]`, a start and a success post nothing; a failure posts."""
    server = hook()
    notifier, bus, _ = notifier_for(settings_for(server.url, events=("failed",)))
    deploy_events(bus, outcome="succeeded")
    deploy_events(bus, outcome="failed")
    notifier.close(10)
    assert [payload["event"] for payload in server.payloads()] == ["failed"]


def test_a_missing_token_is_warned_and_nothing_posted(hook):
    """A token_env that is not exported: one warning naming it, no request at all."""
    server = hook()
    notifier, bus, lines = notifier_for(settings_for(server.url, "HOOK_TOKEN"))
    deploy_events(bus)
    notifier.close(10)
    assert not server.requests
    assert lines == [f"notify: {server.public}: environment variable HOOK_TOKEN (token_env) "
                     "is not set; not posting to this webhook"]


# ---------------------------------------------------------------- `notify:` config

PATH = "services.hello.notify"
URL = "https://hooks.example.com/deploys"


def parse(raw):
    """parse_notify as config.py calls it."""
    return parse_notify(Reader("fabric.yaml"), raw, PATH)


def refused(raw):
    """The ConfigError's message for `raw`."""
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    return str(caught.value)


def test_defaults_and_no_notify():
    """Only a URL: all four deploy events, 5 s per attempt, 4 retries, 30 s in all."""
    assert parse(None) is None
    assert parse({"webhooks": [{"url": URL, "token_env": "HOOK_TOKEN"}]}) == NotifySettings(
        (Webhook(URL, "HOOK_TOKEN"),), ("started", "succeeded", "failed", "rolled_back"),
        5.0, 4, 30.0)
    assert parse({"webhooks": [{"url": URL}], "events": ["interrupted", "failed"],
                  "timeout": 2, "retries": 0, "max_time": 9}).events == ("interrupted",
                                                                           "failed")


@pytest.mark.parametrize("raw, message", [
    ({"webhooks": [{"url": URL}], "hooks": []}, f"{PATH}.hooks: unknown key"),
    ({"webhooks": [{"url": URL, "token": "x"}]}, f"{PATH}.webhooks[0].token: unknown key"),
])
def test_unknown_keys_are_refused(raw, message):
    """A misspelt key is named, not ignored."""
    assert refused(raw).startswith(f"fabric.yaml: {message}")


@pytest.mark.parametrize("url", ["ftp://x", "hooks.example.com/x", "https://", "http://h:0/",
                                 "http://h:99999/", 5])
def test_a_url_that_is_not_http_is_refused(url):
    """Only http:// and https:// URLs with a host are posted to."""
    assert refused({"webhooks": [{"url": url}]}).startswith(
        f"fabric.yaml: {PATH}.webhooks[0].url: expected an http:// or https:// URL")
    if url == "ftp://x":
        assert refused({"webhooks": [{"url": url}]}) == (
            f"fabric.yaml: {PATH}.webhooks[0].url: expected an http:// or https:// URL, "
            "got 'ftp://x'")


@pytest.mark.parametrize("url", ["https://h/a b", "https://h/\x07", "https://h/\n",
                                 "https://h/caf\u00e9"])
def test_a_url_with_spaces_or_control_characters_is_refused(url):
    """A URL must be printable ASCII: whatever else is percent-encoded."""
    assert refused({"webhooks": [{"url": url}]}).startswith(
        f"fabric.yaml: {PATH}.webhooks[0].url: expected a URL of printable ASCII")


def test_credentials_in_the_url_are_refused_without_showing_them():
    """user:password@ in a URL points to token_env, and the password is not echoed."""
    message = refused({"webhooks": [{"url": "https://bob:pa55word@h/x?key=k3y"}]})
    assert message == (f"fabric.yaml: {PATH}.webhooks[0].url: expected a URL without "
                       "credentials (put a bearer token in token_env), got "
                       "'https://***@h/x?...': it holds user info (user:password@)")
    assert "pa/55" not in refused({"webhooks": [{"url": "https://bob:pa/55word@h/x"}]})


@pytest.mark.parametrize("token_env", ["hook_token", "HOOK-TOKEN", "", 7])
def test_a_token_env_that_is_not_a_variable_name_is_refused(token_env):
    """token_env names an environment variable: A-Z, 0-9 and _."""
    assert refused({"webhooks": [{"url": URL, "token_env": token_env}]}).startswith(
        f"fabric.yaml: {PATH}.webhooks[0].token_env: expected an environment variable name")


def test_unknown_event_names_are_refused():
    """`events:` takes the deploy's start and its outcomes only."""
    assert refused({"webhooks": [{"url": URL}], "events": ["started", "done"]}) == (
        f"fabric.yaml: {PATH}.events[1]: expected one of started, succeeded, failed, "
        "rolled_back, interrupted, got 'done'")


@pytest.mark.parametrize("raw, key", [({}, "webhooks"), ({"webhooks": []}, "webhooks"),
                                      ({"webhooks": [{"url": URL}], "events": []}, "events"),
                                      ({"webhooks": [{}]}, "webhooks[0].url")])
def test_an_empty_webhooks_or_events_list_is_refused(raw, key):
    """A notify: block that would post nothing is a mistake, named as such."""
    assert refused(raw).startswith(f"fabric.yaml: {PATH}.{key}: ")


@pytest.mark.parametrize("key, value, expected", [
    ("timeout", 0, "a number of seconds > 0"), ("max_time", -1, "a number of seconds > 0"),
    ("timeout", True, "a number of seconds > 0"), ("max_time", ".inf", "a number"),
    ("max_time", float("nan"), "a number of seconds > 0"),
    ("retries", -1, "a whole number >= 0"), ("retries", 1.5, "a whole number >= 0"),
])
def test_numbers_that_are_not_positive_are_refused(key, value, expected):
    """Seconds must be > 0 and retries a whole number >= 0."""
    assert refused({"webhooks": [{"url": URL}], key: value}).startswith(
        f"fabric.yaml: {PATH}.{key}: expected {expected}")
