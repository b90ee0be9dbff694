"""The hello app over real HTTP, through tornado.testing."""
import json
from urllib.parse import urlencode

from tornado.testing import AsyncHTTPTestCase

from hello.app import make_app
from hello.settings import Settings


class HelloAppTest(AsyncHTTPTestCase):
    """Form page, answer page and health endpoint."""

    def get_app(self):
        settings = Settings(bind="127.0.0.1", port=0, greeting="hi <there>")
        return make_app(settings, {"release": "20261123T000000Z-abc1234", "commit": "abc1234"})

    def test_form_page(self):
        response = self.fetch("/")
        self.assertEqual(response.code, 200)
        body = response.body.decode()
        self.assertIn("<title>hello</title>", body)
        self.assertIn('id="query-form"', body)
        self.assertIn('id="query"', body)
        self.assertIn('type="submit"', body)
        self.assertIn("hi &lt;there&gt;", body)

    def test_post_echoes_query_escaped(self):
        body = urlencode({"query": "<b>fish & chips</b>"})
        response = self.fetch("/", method="POST", body=body)
        self.assertEqual(response.code, 200)
        text = response.body.decode()
        self.assertIn("post returned", text)
        self.assertIn("&lt;b&gt;fish &amp; chips&lt;/b&gt;", text)
        self.assertNotIn("<b>fish", text)

    def test_health_names_release(self):
        response = self.fetch("/health")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            json.loads(response.body),
            {"status": "ok", "release": "20261123T000000Z-abc1234", "commit": "abc1234"},
        )

    def test_unknown_path_is_404(self):
        self.assertEqual(self.fetch("/nope").code, 404)
