"""Renders a step's templates for one message and builds its MIME bytes; pure apart from reading templates."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from mailer import mime
from mailer.errors import InputError, Problem
from mailer.model import Conference, Pair, Person, Program, Role
from mailer.plan import Occurrence

MAX_SUBJECT = 200
MAX_BODY = 256 * 1024  # a template that renders more than this is a loop gone wrong, not an email
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


def fmt_date(d: date) -> str:
    return f"{d:%B} {d.day}, {d.year}"


def fmt_day(d: date) -> str:
    return f"{d:%A}, {fmt_date(d)}"


def fmt_time(t: time | datetime) -> str:
    hour = t.hour % 12 or 12
    return f"{hour}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"


def fmt_range(a: date, b: date) -> str:
    if a.year != b.year:
        return f"{fmt_date(a)} – {fmt_date(b)}"
    if a.month != b.month:
        return f"{a:%B} {a.day} – {b:%B} {b.day}, {a.year}"
    return f"{a:%B} {a.day}–{b.day}, {a.year}"


def header_safe(value: str) -> str:
    """Fold any control character to a space: no roster or cohort text can add a header.

    Python 3.11.7 lacks the fix for CVE-2024-6923, so this is done before `email` sees the value.
    """
    return " ".join(_HEADER_UNSAFE.sub(" ", value).split())


def message_id(secret: bytes, key: str, domain: str) -> str:
    """Stable per ledger key, unguessable without the installation's secret."""
    digest = hmac.new(secret, key.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
    return f"<{digest}.mm@{domain}>"


class Renderer:
    """The Jinja2 environment over templates/email: sandboxed, strict, HTML autoescaped."""

    def __init__(self, templates_dir: Path) -> None:
        from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.dir = templates_dir
        self.env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(templates_dir)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, context: dict[str, Any], template: str) -> Rendered:
        """Subject and text from T.txt.j2 (its `subject` block), HTML from T.html.j2."""
        from jinja2 import TemplateError

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
    from jinja2 import TemplateSyntaxError, UndefinedError

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


# --- context ---------------------------------------------------------------------------------

def _person(p: Person) -> dict[str, Any]:
    return {"name": p.name, "first_name": p.first_name, "email": p.email, "role": p.role}


def _conference(conf: Conference, pair: Pair) -> dict[str, Any]:
    meetup = None
    if conf.meetup is not None:
        m = conf.meetup
        start = datetime.combine(m.day, m.start, tzinfo=conf.timezone)
        local_times = []
        for person in pair.people():
            if person.timezone is not None and person.timezone.key != conf.timezone.key:
                there = start.astimezone(person.timezone)
                day_note = "" if there.date() == m.day else f" on {there:%A}"
                local_times.append(f"{person.first_name}: {fmt_time(there)} {there.tzname()}{day_note}")
        meetup = {"day": fmt_day(m.day), "time": fmt_time(m.start), "timezone": start.tzname() or conf.timezone.key,
                  "minutes": m.minutes, "place": m.place, "local_times": local_times}
    return {"key": conf.key, "name": conf.name, "city": conf.city, "venue": conf.venue,
            "dates": fmt_range(conf.start, conf.end), "status": conf.status, "meetup": meetup}


def template_name(occ: Occurrence) -> str:
    """A cancelled meetup has its own wording; everything else uses its step's template."""
    if occ.change is not None and occ.change.method == "CANCEL":
        return "meetup_cancel"
    return occ.step.template


def context(program: Program, occ: Occurrence) -> dict[str, Any]:
    """The variables every template sees; dates are formatted here, not in templates."""
    cohort, pair, step = occ.cohort, occ.pair, occ.step
    update = occ.change.change if occ.change is not None else None
    role: Role | None = occ.role
    return {
        "program": {"name": program.name},
        "cohort": {
            "id": cohort.id, "name": cohort.name,
            "start": fmt_date(cohort.start), "end": fmt_date(cohort.end),
            "coordinator": {"name": cohort.coordinator.name, "email": cohort.coordinator.email},
            "evaluations": dict(cohort.evaluations),
        },
        "pair": {"id": pair.id, "mentor": _person(pair.mentor), "mentee": _person(pair.mentee)},
        "recipient": _person(pair.person(role)) if role else None,
        "partner": _person(pair.partner(role)) if role else None,
        "step": {"key": step.key, "description": step.description, "due": fmt_date(occ.due_at.date())},
        "conference": _conference(step.conference, pair) if step.conference else None,
        "readings": list(program.readings),
        "update": update,
    }


# --- MIME ------------------------------------------------------------------------------------

def build_message(occ: Occurrence, rendered: Rendered, *, msg_id: str, now: datetime,
                  ics: bytes | None = None, method: str = "REQUEST") -> bytes:
    """The email for one occurrence, as wire bytes: From/Reply-To the coordinator, To the recipients,
    text and HTML alternatives; with `ics`, the RFC 6047 layout that calendar clients answer:
    multipart/mixed [ multipart/alternative [ text, html, text/calendar ], invite.ics ]."""
    coord = occ.cohort.coordinator
    sender = mime.address(header_safe(coord.name), coord.ascii_email)
    to = [(header_safe(occ.pair.person(r).name), occ.pair.person(r).ascii_email) for r in occ.recipients()]
    headers = [
        ("From", sender),
        ("To", mime.address_list(to)),
        ("Reply-To", sender),
        ("Subject", mime.unstructured("Subject", header_safe(rendered.subject))),
        ("Date", format_datetime(now)),
        ("Message-ID", header_safe(msg_id)),
        ("Auto-Submitted", "auto-generated"),  # RFC 3834: vacation responders should not answer
        ("X-Mentor-Mailer-Key", header_safe(occ.key)),  # ids are validated on load; this is the second guard
    ]
    # the boundary comes from the Message-ID, not chance: the same plan renders the same bytes
    boundary = "=_mm_" + hashlib.sha256(msg_id.encode()).hexdigest()[:24]
    parts = [mime.text("plain", rendered.text), mime.text("html", rendered.html)]
    if ics is None:
        return mime.message(headers, mime.multipart("alternative", boundary, parts))
    calendar = mime.leaf(f'text/calendar; charset="UTF-8"; method={method}', mime.b64(ics), encoding="base64")
    attachment = mime.leaf('application/ics; name="invite.ics"', mime.b64(ics), encoding="base64",
                           extra=[("Content-Disposition", 'attachment; filename="invite.ics"')])
    alternative = mime.multipart("alternative", boundary + "a", [*parts, calendar])
    return mime.message(headers, mime.multipart("mixed", boundary + "m", [alternative, attachment]))


def envelope(occ: Occurrence) -> tuple[str, list[str]]:
    """SMTP envelope: the coordinator as sender, each recipient's wire address."""
    return occ.cohort.coordinator.ascii_email, [occ.pair.person(r).ascii_email for r in occ.recipients()]
