"""Posts a deploy's start and outcome to the `notify:` webhooks, never in the deploy's way.

The Notifier is an EventBus subscriber: `started` and `finished` events become one JSON
payload each, queued for one background thread that posts them in order with urllib3.
urllib3's Retry does the retrying (connect and read errors, 429 and 5xx, Retry-After);
DeadlineRetry bounds one event's attempts per webhook, waits included, by `max_time`. A
webhook that stays down is logged and never raises into the deploy; `close(timeout)`
waits at most `timeout` seconds for what is queued and abandons the rest.
"""
import json
import queue
import threading
import time

import urllib3
from urllib3.exceptions import HTTPError, InvalidHeader, MaxRetryError
from urllib3.util import Retry, Timeout

FORCELIST = (429, 500, 502, 503, 504)
HEADERS = {"Content-Type": "application/json", "User-Agent": "fabship"}
CONTEXT = ("service", "environment", "commit", "deployer")


class TimeUp(HTTPError):
    """No time left within max_time for another attempt."""


class GaveUp(MaxRetryError):
    """urllib3's give-up, with how many attempts were made."""

    def __init__(self, pool, url, reason, attempts):
        super().__init__(pool, url, reason)
        self.attempts = attempts


class DeadlineRetry(Retry):
    """urllib3's Retry, making no attempt it could not finish by `deadline` (monotonic).

    A retry is made only when its wait (the backoff, or the server's Retry-After, as
    urllib3 would sleep) plus one whole attempt (`attempt` seconds) ends before the
    deadline; otherwise GaveUp is raised at once: a huge or hostile Retry-After makes
    nobody wait. A Retry-After that is not a number or a date is ignored (backoff).
    """

    RETRY_AFTER_STATUS_CODES = frozenset((429, 503))  # not 413: a smaller body would do

    def __init__(self, *args, deadline=0.0, attempt=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline, self.attempt, self.wait = deadline, attempt, 0.0

    def new(self, **kw):
        return super().new(**{"deadline": self.deadline, "attempt": self.attempt, **kw})

    def get_retry_after(self, response):
        try:
            return super().get_retry_after(response)
        except (InvalidHeader, ValueError, OverflowError):  # garbage, or 5000 digits
            return None

    def increment(self, method=None, url=None, response=None, error=None,  # pylint: disable=R0913,R0917
                  _pool=None, _stacktrace=None):
        attempts = len(self.history) + 1
        try:
            retry = super().increment(method, url, response, error, _pool, _stacktrace)
        except MaxRetryError as exc:
            raise GaveUp(_pool, url, exc.reason, attempts) from exc
        after = None
        if response is not None and self.respect_retry_after_header:
            after = self.get_retry_after(response)
        retry.wait = after or retry.get_backoff_time()
        if time.monotonic() + retry.wait + self.attempt > self.deadline:
            last = error or f"HTTP {response.status}" + (
                f" asking to wait {after:g}s (Retry-After)" if after else "")
            raise GaveUp(_pool, url, TimeUp(f"{last}; no time left within max_time for "
                                            "another attempt"), attempts)
        return retry

    def sleep(self, response=None):
        time.sleep(self.wait)


class Notifier:  # pylint: disable=too-many-instance-attributes
    """An EventBus subscriber posting deploy events to webhooks from one background thread.

    `context` holds service, environment, commit and deployer; `environ` the bearer
    tokens' variables; `say(line)` logs one line (never a token or a query string).
    """

    def __init__(self, settings, context, environ, say):
        self.settings, self.context, self.environ, self.say = settings, context, environ, say
        self.hosts = []  # from `started`, for the outcome's payload too
        self._queue = queue.Queue()
        self._cond = threading.Condition()
        self._pending, self._closed, self._abandoned = 0, False, False
        self._warned = set()
        self._http = urllib3.PoolManager()
        self._thread = None

    def __call__(self, event):
        """Queue the event's payload when it is one to post; returns at once, never raises."""
        try:
            payload = self.payload(event)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            payload = f"notify: {event.kind!r} not posted: {type(exc).__name__}: {exc}"
        if payload is not None:
            self._put(payload)

    def payload(self, event):
        """The JSON object to post for `event`, or None when it is not one to post."""
        data = event.data
        if event.kind == "started":
            self.hosts = [str(host) for host in data.get("hosts") or ()]
            name, duration, failed = "started", None, []
        elif event.kind == "finished":
            name, duration = data.get("outcome"), data.get("duration")
            failed = [str(host) for host in data.get("failed") or ()]
        else:
            return None
        if name not in self.settings.events:
            return None
        context = {key: self.context.get(key) for key in CONTEXT}
        return {"event": name, "service": context["service"],
                "environment": context["environment"], "release": event.release,
                "commit": context["commit"], "deployer": context["deployer"],
                "hosts": list(self.hosts), "outcome": None if name == "started" else name,
                "duration": duration, "failed_hosts": failed,
                "time": event.to_json()["time"]}

    def close(self, timeout):
        """Wait at most `timeout` seconds for queued posts; abandon (and log) the rest."""
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: self._pending == 0, timeout)
            left, self._abandoned = self._pending, True
        self._queue.put(None)
        if left:
            self.say(f"notify: {left} webhook post(s) still pending after {timeout:g}s; "
                     "abandoned")

    def _put(self, item):
        with self._cond:
            if self._closed:
                return
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="fabship-notify",
                                                daemon=True)
                self._thread.start()
        self._queue.put(item)

    def _work(self):
        while (item := self._queue.get()) is not None:
            try:
                if isinstance(item, str):
                    self._say(item)
                elif not self._abandoned:
                    self._post(item)
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()
        self._http.clear()

    def _say(self, line):
        if self._abandoned:  # the run is over: its log may be closed
            return
        try:
            self.say(line)
        except Exception:  # pylint: disable=broad-exception-caught
            pass  # a log that cannot take the line must not stop the posts

    def _post(self, payload):
        body = json.dumps(payload).encode("utf-8")
        for hook in self.settings.webhooks:
            headers, token = dict(HEADERS), None
            if hook.token_env:
                token = self.environ.get(hook.token_env)
                if not token:
                    if hook not in self._warned:
                        self._warned.add(hook)
                        self._say(f"notify: {hook.public}: environment variable "
                                  f"{hook.token_env} (token_env) is not set; not posting "
                                  "to this webhook")
                    continue
                if not token.isprintable() or not token.isascii() or " " in token:
                    if hook not in self._warned:  # a header cannot carry it; never shown
                        self._warned.add(hook)
                        self._say(f"notify: {hook.public}: {hook.token_env} (token_env) "
                                  "holds spaces, line breaks or other characters a header "
                                  "cannot carry; not posting to this webhook")
                    continue
                headers["Authorization"] = f"Bearer {token}"
            self._send(hook, payload["event"], body, headers, token)

    def _send(self, hook, name, body, headers, token):  # pylint: disable=R0913,R0917
        settings = self.settings
        attempt = min(settings.timeout, settings.max_time)
        retry = DeadlineRetry(
            total=settings.retries, other=0, redirect=False, allowed_methods=("POST",),
            status_forcelist=FORCELIST, backoff_factor=settings.backoff,
            backoff_jitter=settings.backoff, backoff_max=settings.max_time,
            respect_retry_after_header=True, attempt=attempt,
            deadline=time.monotonic() + settings.max_time)
        try:
            response = self._http.request("POST", hook.url, body=body, headers=headers,
                                          retries=retry, timeout=Timeout(total=attempt),
                                          redirect=False)
        except GaveUp as exc:
            self._give_up(hook, name, exc.attempts, exc.reason, token)
            return
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._give_up(hook, name, None, f"{type(exc).__name__}: {exc}", token)
            return
        if not 200 <= response.status < 300:
            attempts = len(response.retries.history) + 1 if response.retries else None
            self._give_up(hook, name, attempts, f"HTTP {response.status} (not retried)",
                          token)

    def _give_up(self, hook, name, attempts, reason, token):  # pylint: disable=R0913,R0917
        """Log a give-up: the URL without its query, and no token."""
        text = str(reason).replace(hook.url, hook.public)
        query = hook.url.partition("?")[2]
        if query:
            text = text.replace(query, "...")
        if token:
            for shown in (token, repr(token)[1:-1], f"Bearer {token}"):
                text = text.replace(shown, "********")
        count = "" if attempts is None else \
            f" after {attempts} attempt{'' if attempts == 1 else 's'}"
        self._say(f"notify: {hook.public} gave up on {name!r}{count}: {text}")
