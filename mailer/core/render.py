"""Renders a step's templates for one message: subject, text and HTML, from a given template loader.

A step is either a pair of templates, `T.txt.j2` (with a `subject` block) and `T.html.j2`, or one Markdown
template `T.md.j2` (a `subject` block, then the body in Markdown) from which both parts are made, inside the
layouts `base.txt.j2` and `base.html.j2`. The pair wins when present.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jinja2 import (
    BaseLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    select_autoescape,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailer.core import markdown
from mailer.core.mime import header_safe
from mailer.core.wrap import wrap_text
from mailer.errors import InputError, Problem

MAX_SUBJECT = 200
MAX_BODY = 256 * 1024  # a template that renders more than this is a loop gone wrong, not an email

Kind = Literal["pair", "markdown"]


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


def template_kind(exists: set[str], template: str) -> Kind:
    """Which kind of step `template` is, given the template file names that exist: the pair wins."""
    if f"{template}.md.j2" in exists and not {f"{template}.txt.j2", f"{template}.html.j2"} & exists:
        return "markdown"
    return "pair"


class _Undefined(StrictUndefined):
    """StrictUndefined that names what the missing key was looked up in, instead of "'dict object' has no
    attribute"; template_problem adds the dotted path from the template's line."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if isinstance(self._undefined_obj, dict):
            return f"{self._undefined_name}; known: {', '.join(sorted(map(str, self._undefined_obj)))}"
        return super()._undefined_message


class Renderer:
    """The Jinja2 environments over a template loader (load.templates gives the folder's): sandboxed, strict,
    HTML autoescaped; for Markdown templates, every `{{ }}` value is escaped as Markdown."""

    def __init__(self, loader: BaseLoader) -> None:
        options: dict[str, Any] = {"loader": loader, "undefined": _Undefined, "trim_blocks": True,
                                   "lstrip_blocks": True, "keep_trailing_newline": True}
        self.env = ImmutableSandboxedEnvironment(
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False), **options)
        # values are data, not markup: `*Smith*` stays literal; the HTML escaping follows in the layout's
        # renderer, which sees only markdown-it's output
        self.md_env = ImmutableSandboxedEnvironment(autoescape=False, finalize=markdown.escape, **options)
        self._md_body = self.md_env.from_string("{% extends md_template %}{% block subject %}{% endblock %}")
        # the body goes into the layout as markdown-it made it (escaped there); the layout's own values are
        # autoescaped as always, since autoescape follows the template that holds the expression
        self._in_layout = {ext: self.env.from_string(f'{{% extends "base.{ext}.j2" %}}{{% block body %}}'
                                                     "{{ md_body }}{% endblock %}") for ext in ("txt", "html")}
        self._kinds: dict[str, Kind] = {}

    def _source(self, name: str) -> str | None:
        try:
            return str(self.env.loader.get_source(self.env, name)[0]) if self.env.loader else None
        except TemplateError:
            return None

    def kind(self, template: str) -> Kind:
        """Whether the step `template` is a Markdown file or a pair; asked of the loader once per template."""
        if template not in self._kinds:
            names = {f"{template}.{ext}.j2" for ext in ("txt", "html", "md")}
            self._kinds[template] = template_kind({n for n in names if self._exists(n)}, template)
        return self._kinds[template]

    def _exists(self, name: str) -> bool:
        assert self.env.loader is not None
        try:
            self.env.loader.get_source(self.env, name)
        except TemplateNotFound:
            return False
        return True

    def render(self, context: dict[str, Any], template: str) -> Rendered:
        """Subject, text and HTML: from T.txt.j2 (its `subject` block) and T.html.j2, or from T.md.j2.
        The layouts see the rendered subject as `subject`, for the HTML title and the one heading."""
        markdown_step = self.kind(template) == "markdown"
        name = f"{template}.md.j2" if markdown_step else f"{template}.txt.j2"
        try:
            first = self.env.get_template(name)
            subject = header_safe(_subject(first, context, name))
            if not subject:
                raise InputError([Problem(f"templates/email/{name}", None, "subject", "renders empty")])
            suffix = header_safe(str(context.get("subject_suffix", "")))
            suffix = f" {suffix}" if suffix else ""
            context = {**context, "subject": subject[:MAX_SUBJECT - len(suffix)] + suffix}
            if markdown_step:
                body = _bounded(self._md_body, {**context, "md_template": name}, name)
                text = _bounded(self._in_layout["txt"], {**context, "md_body": markdown.to_text(body)}, name)
                html = _bounded(self._in_layout["html"], {**context, "md_body": markdown.to_html(body)}, name)
            else:
                text = wrap_text(_bounded(first, context, name))  # Markdown steps: markdown.to_text wraps
                name = f"{template}.html.j2"
                html = _bounded(self.env.get_template(name), context, name)
        except InputError:
            raise
        except (TemplateError, ArithmeticError, ValueError, TypeError, LookupError, RecursionError) as exc:
            # a template is the coordinator's code: whatever it raises (the sandbox's "range too big", a
            # division by zero) is a problem in that file, with its line, never a traceback
            raise InputError([template_problem(exc, name, self._source)]) from None
        _check_size(text, name if markdown_step else f"{template}.txt.j2")
        _check_size(html, name)
        return Rendered(context["subject"], _tidy(text), html)


def _subject(template: Template, context: dict[str, Any], name: str) -> str:
    if "subject" not in template.blocks:
        raise InputError([Problem(f"templates/email/{name}", None, "subject",
                                  "block is missing: define {% block subject %}...{% endblock %}")])
    return "".join(template.blocks["subject"](template.new_context(context)))


def _bounded(template: Template, context: dict[str, Any], name: str) -> str:
    """Render as a stream and stop at MAX_BODY: a runaway loop is caught as it runs, never after it has
    filled the memory."""
    parts: list[str] = []
    size = 0
    stream: Any = template.generate(context)
    for part in stream:
        parts.append(part)
        size += len(part)
        if size > MAX_BODY:
            line = _line_now(stream, template)
            stream.close()
            raise InputError([Problem(f"templates/email/{name}", line, None,
                                      f"renders more than {MAX_BODY} characters (a loop that runs away?); an "
                                      "email is far shorter")])
    return "".join(parts)


def _line_now(stream: Any, template: Template) -> int | None:
    """The template line a paused render is at: the innermost generator's frame, mapped back by Jinja."""
    inner = stream
    while getattr(inner, "gi_yieldfrom", None) is not None:
        inner = inner.gi_yieldfrom
    frame = getattr(inner, "gi_frame", None)
    if frame is None:
        return None
    try:
        return template.get_corresponding_lineno(frame.f_lineno)
    except (AttributeError, IndexError, ValueError):
        return None


def _check_size(body: str, name: str) -> None:
    if len(body) > MAX_BODY:
        raise InputError([Problem(f"templates/email/{name}", None, None,
                                  f"renders {len(body)} characters; at most {MAX_BODY}")])


def template_problem(exc: Exception, name: str, source: Callable[[str], str | None] | None = None) -> Problem:
    """Where a Jinja2 error arose, as the coordinator would look for it; with `source` (a template's text by
    name), an undefined key is named by its path, as the template writes it: recipient.frist_name."""
    filename = getattr(exc, "filename", None) or getattr(exc, "name", None) or name
    line = getattr(exc, "lineno", None)
    if not isinstance(exc, TemplateSyntaxError):
        tb = exc.__traceback__
        while tb is not None:  # jinja2 rewrites frames so the template's own line is in the traceback
            if tb.tb_frame.f_code.co_filename.endswith(".j2"):
                filename, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
            tb = tb.tb_next
    if isinstance(exc, UndefinedError):
        msg = f"undefined variable {_undefined_path(exc.message or '', filename, line, source)}"
    elif isinstance(exc, TemplateSyntaxError):
        msg = f"template syntax error: {exc.message}"
    elif isinstance(exc, TemplateError):
        msg = f"template error: {exc}"
    else:
        msg = f"template error: {type(exc).__name__}: {exc}"
    shown = "templates/email/" + Path(str(filename)).name
    return Problem(shown, line, None, msg)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def _undefined_path(message: str, filename: object, line: int | None, source: Callable[[str], str | None] | None,
                    ) -> str:
    """ "recipient.frist_name; known: email, first_name, …" from "frist_name; known: …" and the template's
    line; "frist" from "'frist' is undefined"."""
    if message.endswith(" is undefined") and message.startswith("'"):
        return message.removesuffix(" is undefined").strip("'")
    name, sep, known = message.partition("; known: ")
    if not sep:
        return message
    lines = (source(Path(str(filename)).name) or "").splitlines() if source is not None else []
    if line is not None and 0 < line <= len(lines):
        found = re.search(rf"([A-Za-z_][\w.]*)\.{re.escape(name)}\b", lines[line - 1])
        if found:
            name = f"{found.group(1)}.{name}"
    return f"{name}; known: {known}"
