"""Renders a step's templates for one message: subject, text and HTML, from a given template loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailer.core.mime import header_safe
from mailer.errors import InputError, Problem

MAX_SUBJECT = 200
MAX_BODY = 256 * 1024  # a template that renders more than this is a loop gone wrong, not an email


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


class Renderer:
    """The Jinja2 environment over a template loader (load.templates gives the folder's): sandboxed, strict,
    HTML autoescaped."""

    def __init__(self, loader: BaseLoader) -> None:
        self.env = ImmutableSandboxedEnvironment(
            loader=loader,
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, context: dict[str, Any], template: str) -> Rendered:
        """Subject and text from T.txt.j2 (its `subject` block), HTML from T.html.j2."""
        name = f"{template}.txt.j2"
        try:
            text_t = self.env.get_template(name)
            if "subject" not in text_t.blocks:
                raise InputError([Problem(f"templates/email/{name}", None, "subject",
                                          "block is missing: define {% block subject %}...{% endblock %}")])
            subject = "".join(text_t.blocks["subject"](text_t.new_context(context)))
            text = text_t.render(context)
            name = f"{template}.html.j2"
            html = self.env.get_template(name).render(context)
        except TemplateError as exc:
            raise InputError([template_problem(exc, name)]) from None
        subject = header_safe(subject)
        if not subject:
            raise InputError([Problem(f"templates/email/{template}.txt.j2", None, "subject", "renders empty")])
        for part, body in (("text", text), ("html", html)):
            if len(body) > MAX_BODY:
                raise InputError([Problem(f"templates/email/{template}.{'txt' if part == 'text' else 'html'}.j2",
                                          None, None, f"renders {len(body)} characters; at most {MAX_BODY}")])
        return Rendered(subject[:MAX_SUBJECT], _tidy(text), html)


def template_problem(exc: Exception, name: str) -> Problem:
    """Where a Jinja2 error arose, as the coordinator would look for it."""
    filename = getattr(exc, "filename", None) or getattr(exc, "name", None) or name
    line = getattr(exc, "lineno", None)
    if isinstance(exc, UndefinedError):
        tb = exc.__traceback__
        while tb is not None:  # jinja2 rewrites frames so the template's own line is in the traceback
            if tb.tb_frame.f_code.co_filename.endswith(".j2"):
                filename, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
            tb = tb.tb_next
        msg = f"undefined variable: {exc.message}"
    elif isinstance(exc, TemplateSyntaxError):
        msg = f"template syntax error: {exc.message}"
    else:
        msg = f"template error: {exc}"
    shown = "templates/email/" + Path(str(filename)).name
    return Problem(shown, line, None, msg)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n") + "\n"
