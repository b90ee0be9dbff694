"""Jinja2 with StrictUndefined: strings and template files -> text. templates/ is data."""
from pathlib import Path

import shlex

import jinja2

from .errors import ConfigError

FABSHIP_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def environment(project_templates):
    """A Jinja2 environment over the project's templates/, then fabship's own."""
    dirs = [str(project_templates)]
    if Path(project_templates).resolve() != FABSHIP_TEMPLATES:
        dirs.append(str(FABSHIP_TEMPLATES))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(dirs),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    env.filters["shell_quote"] = lambda value: shlex.quote(str(value))
    return env


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
