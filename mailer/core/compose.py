"""What a message says and how it is built: the template context, the formatting of dates, the MIME bytes."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from mailer.core import mime, tokens
from mailer.core.dates import fmt_date, fmt_day, fmt_range, fmt_time
from mailer.core.model import Conference, Pair, Person, Program, Role
from mailer.core.occurrence import Occurrence
from mailer.core.render import Rendered


def message_id(secret: bytes, key: str, domain: str) -> str:
    """Stable per ledger key, unguessable without the installation's secret."""
    digest = hmac.new(secret, key.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
    return f"<{digest}.mm@{domain}>"


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


# the last cohorts' people in several pairs, by the pairs tuple's identity: context() runs once per message,
# and counting a 10,000-pair roster each time would make a run quadratic
_SHARED: dict[int, tuple[tuple[Pair, ...], frozenset[str]]] = {}


def in_several_pairs(pairs: tuple[Pair, ...]) -> frozenset[str]:
    """The (lower-cased wire) addresses of the people who are in more than one of `pairs`."""
    hit = _SHARED.get(id(pairs))
    if hit is not None and hit[0] is pairs:
        return hit[1]
    seen: set[str] = set()
    twice: set[str] = set()
    for pair in pairs:
        for person in pair.people():
            address = person.ascii_email.lower()
            (twice if address in seen else seen).add(address)
    if len(_SHARED) > 16:
        _SHARED.clear()
    _SHARED[id(pairs)] = (pairs, frozenset(twice))
    return _SHARED[id(pairs)][1]


def partner_note(occ: Occurrence) -> str:
    """" (Priya & Mika)" when a recipient of this message is in several pairs of the cohort, so that the
    same step's emails of their pairs are told apart in the inbox; otherwise nothing."""
    shared = in_several_pairs(occ.cohort.pairs)
    if any(occ.pair.person(r).ascii_email.lower() in shared for r in occ.recipients()):
        return f" ({occ.pair.mentor.first_name} & {occ.pair.mentee.first_name})"
    return ""


def template_name(occ: Occurrence) -> str:
    """A cancelled meetup has its own wording; everything else uses its step's template."""
    if occ.change is not None and occ.change.method == "CANCEL":
        return "meetup_cancel"
    return occ.step.template


# --- check-ins and unsubscribe links ----------------------------------------------------------

CHECKIN_QUESTION = "Have you two met this month? Choose one and send the email it opens:"
CHECKIN_ANSWERS: tuple[tuple[tokens.CheckinAnswer, str], ...] = (
    ("met", "We met this month"), ("not-yet", "Not yet"), ("help", "We'd like help"))


@dataclass(frozen=True, slots=True)
class Links:
    """What a monthly prompt carries besides its words: List-Unsubscribe headers and check-in links."""

    headers: tuple[tuple[str, str], ...] = ()
    checkin: dict[str, Any] | None = None  # for the base layouts: {"question", "answers": [{"label", "href"}]}


def _quote(text: str) -> str:
    """RFC 3986 percent-encoding for a mailto: subject (urllib.parse would pull the network modules into core)."""
    safe = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return "".join(ch if ch in safe else "".join(f"%{b:02X}" for b in ch.encode("utf-8")) for ch in text)


def is_prompt(occ: Occurrence) -> bool:
    """A step of the year without an invitation: invitations, their updates and cancellations are not prompts."""
    return occ.change is None and not occ.has_invite


def links(occ: Occurrence, secret: bytes, *, checkins: bool = True, unsubscribe_url: str | None = None) -> Links:
    """The unsubscribe headers (RFC 2369, and RFC 8058 with a URL) and check-in links of a prompt; each
    carries a token signed with the ledger's secret, so the answer needs no table to be recognised.
    A message to both partners carries a pair token: the inbox then stops the one who sent the request."""
    if not is_prompt(occ):
        return Links()
    coord = occ.cohort.coordinator.ascii_email
    token = tokens.make_unsubscribe(secret, occ.cohort.id, occ.pair.id, occ.role or "pair")
    targets = [f"<mailto:{coord}?subject=unsubscribe-{token}>"]
    headers = []
    if unsubscribe_url:
        targets.append(f"<{unsubscribe_url.replace('{token}', token)}>")
    headers.append(("List-Unsubscribe", ", ".join(targets)))
    if unsubscribe_url:
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    checkin = None
    if checkins:
        answers = []
        for answer, label in CHECKIN_ANSWERS:
            tok = tokens.make_checkin(secret, occ.cohort.id, occ.pair.id, occ.step.key, answer)
            answers.append({"label": label, "href": f"mailto:{coord}?subject={_quote(f'{label} ({tok})')}"})
        checkin = {"question": CHECKIN_QUESTION, "answers": answers}
    return Links(tuple(headers), checkin)


def context(program: Program, occ: Occurrence, *, checkin: dict[str, Any] | None = None) -> dict[str, Any]:
    """The variables every template sees; dates are formatted here, not in templates."""
    cohort, pair, step = occ.cohort, occ.pair, occ.step
    update = occ.change.change if occ.change is not None else None
    role: Role | None = occ.role
    return {
        "program": {"name": program.name},
        "cohort": {
            "id": cohort.id, "name": cohort.name, "language": cohort.language,
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
        "checkin": checkin,  # the base layouts end a prompt with these links; None leaves them out
        "subject_suffix": partner_note(occ),  # the renderer adds it to whatever subject the template makes
    }


# --- MIME ------------------------------------------------------------------------------------

def build_message(occ: Occurrence, rendered: Rendered, *, msg_id: str, now: datetime,
                  ics: bytes | None = None, method: str = "REQUEST",
                  extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """The email for one occurrence, as wire bytes: From/Reply-To the coordinator, To the recipients,
    text and HTML alternatives; with `ics`, the RFC 6047 layout that calendar clients answer:
    multipart/mixed [ multipart/alternative [ text, html, text/calendar ], invite.ics ]."""
    coord = occ.cohort.coordinator
    sender = mime.address(mime.header_safe(coord.name), coord.ascii_email)
    to = [(mime.header_safe(occ.pair.person(r).name), occ.pair.person(r).ascii_email) for r in occ.addressed()]
    headers = [
        ("From", sender),
        ("To", mime.address_list(to)),
        ("Reply-To", sender),
        ("Subject", mime.unstructured("Subject", mime.header_safe(rendered.subject))),
        ("Date", format_datetime(now.astimezone(occ.cohort.timezone))),  # the program's time, as people read it
        ("Message-ID", mime.header_safe(msg_id)),
        ("Auto-Submitted", "auto-generated"),  # RFC 3834: vacation responders should not answer
        ("X-Mentor-Mailer-Key", mime.header_safe(occ.key)),  # ids are validated on load; this is the second guard
        *extra,
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
    """SMTP envelope: the coordinator as sender, each recipient's wire address (a partner left out is not one)."""
    return occ.cohort.coordinator.ascii_email, [occ.pair.person(r).ascii_email for r in occ.addressed()]
