"""The Tornado application: a form page and a health endpoint."""
import tornado.web

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
    """Base handler of the service."""

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


def make_app(settings, release_info):
    """Build the application for the given settings and release info."""
    return tornado.web.Application(
        [(r"/", FormHandler), (r"/health", HealthHandler)],
        greeting=settings.greeting,
        release_info=release_info,
    )
