"""Jinja2 with StrictUndefined: strings and template files -> text. templates/ is data."""
import shlex

import jinja2

from .errors import ConfigError
from .secrets import MASK


def own_templates():
    """fabship's own templates (launcher, supervisord.conf, systemd unit): package data of
    `fabship`, read through Jinja2's package loader."""
    return jinja2.PackageLoader("fabship", "templates")


def environment(project_templates):
    """A Jinja2 environment over the project's templates, then fabship's own (a project's
    template of the same name wins).

    `project_templates` is a directory, or {name: text} as read from the commit that
    ships (deploy/sourcetree.read_templates).
    """
    if isinstance(project_templates, dict):
        project = jinja2.FunctionLoader(lambda name: _committed(project_templates, name))
    else:
        project = jinja2.FileSystemLoader(str(project_templates))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader([project, own_templates()]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    env.filters["shell_quote"] = lambda value: shlex.quote(str(value))
    return env


def _committed(templates, name):
    """(source, file name errors show, up-to-date check) of a template read from a commit."""
    if name not in templates:
        return None
    return templates[name], f"templates/{name}", lambda: True


def _explain(exc, what):
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"{what}: template {exc.name!r} not found under templates/"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = f"{exc.filename or exc.name or 'string'}, line {exc.lineno}"
        return f"{what}: template syntax error ({where}): {exc.message}"
    return f"{what}: {exc.message}" if getattr(exc, "message", None) else f"{what}: {exc}"


def _render(load, variables, what):
    try:
        return load().render(variables)
    except jinja2.TemplateError as exc:
        raise ConfigError(_explain(exc, what)) from exc
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        # An expression failed (`{{ port + 'x' }}`): name the error, not the values.
        raise ConfigError(f"{what}: template expression failed: {type(exc).__name__}") from exc


def render_string(env, text, variables, what):
    """Render an inline template (a config value such as `run`)."""
    return _render(lambda: env.from_string(text), variables, what)


def render_file(env, name, variables, what):
    """Render templates/<name>."""
    return _render(lambda: env.get_template(name), variables, what)


HIDDEN = "(not shown: it holds secrets, and its template cannot render with them masked)"


class Renderer:  # pylint: disable=too-few-public-methods
    """Renders twice: with the secrets masked (what plans, logs and errors show), then real.

    The masked render runs first, so a template error names masked values only; an error
    only the real values raise is reported without them. A template that renders for
    real but not masked (`{{ TOKEN.split(':')[1] }}`) is not refused: its content is
    hidden from plans instead.
    """

    def __init__(self, env, variables, secrets):
        self.env, self.secrets, self.plain = env, secrets, variables
        self.real = {**variables, **{s.name: s.value for s in secrets}}
        self.masked = {**variables, **{s.name: MASK for s in secrets}}

    def render(self, source, what, inline=False):
        """(real, shown) texts of templates/<source>, or of the inline template `source`."""
        render = render_string if inline else render_file
        if not self.secrets:
            text = render(self.env, source, self.real, what)
            return text, text
        try:
            shown = render(self.env, source, self.masked, what)
        except ConfigError as masked_error:
            try:
                return render(self.env, source, self.real, what), HIDDEN
            except ConfigError:
                raise masked_error from None
        try:
            return render(self.env, source, self.real, what), shown
        except ConfigError as exc:
            kind = type(exc.__cause__).__name__ if exc.__cause__ else "error"
            raise ConfigError(f"{what}: the template fails with the real secret values "
                              f"({kind}), though not with them masked; the values are "
                              "not shown") from None
