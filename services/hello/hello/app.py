"""The Tornado application: a form page, a health endpoint and a slow answer."""
import asyncio

import tornado.web

MAX_WAIT = 30.0

PAGE = """<!DOCTYPE html>
<html>
<head><title>hello</title></head>
<body>
<h1>{greeting}</h1>
{answer}
<form id="query-form" method="post" action="/">
  <input type="text" id="query" name="query" autofocus>
  <button type="submit" id="submit">Send</button>
</form>
</body>
</html>
"""


class Handler(tornado.web.RequestHandler):
    """Base handler of the service; counts the requests in flight (for draining)."""

    def prepare(self):
        """One more request in flight."""
        self.settings["in_flight"][0] += 1

    def on_finish(self):
        """One fewer."""
        self.settings["in_flight"][0] -= 1

    def data_received(self, chunk):
        """Never called: no handler here uses @stream_request_body."""


class FormHandler(Handler):
    """GET shows the form; POST echoes the query back, escaped."""

    def get(self):
        """The empty form."""
        self._page("")

    def post(self):
        """The form again, with the submitted query echoed back."""
        query = self.get_body_argument("query", default="")
        self._page(f'<p id="answer">post returned: {tornado.escape.xhtml_escape(query)}</p>')

    def _page(self, answer):
        greeting = tornado.escape.xhtml_escape(self.settings["greeting"])
        self.write(PAGE.format(greeting=greeting, answer=answer))


class HealthHandler(Handler):
    """Reports liveness and the release this process serves."""

    def get(self):
        """{"status": "ok", "release": ..., "commit": ...}"""
        self.write({"status": "ok", **self.settings["release_info"]})


class WaitHandler(Handler):
    """GET /wait?seconds=S answers after S seconds (at most 30): a request a deploy must
    let finish."""

    async def get(self):
        """{"waited": S, "release": ...} once S seconds have passed."""
        try:
            seconds = float(self.get_query_argument("seconds", "1"))
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= MAX_WAIT:
            raise tornado.web.HTTPError(400, reason="seconds: 0 to 30")
        await asyncio.sleep(seconds)
        self.write({"waited": seconds, "release": self.settings["release_info"]["release"]})


def make_app(settings, release_info):
    """Build the application for the given settings and release info."""
    return tornado.web.Application(
        [(r"/", FormHandler), (r"/health", HealthHandler), (r"/wait", WaitHandler)],
        greeting=settings.greeting,
        release_info=release_info,
        in_flight=[0],
    )
