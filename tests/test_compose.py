"""Rendering the real templates and building the real message bytes."""

from __future__ import annotations

import email
import email.policy
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailer.core import year as planner
from mailer.core.compose import build_message, context, message_id
from mailer.core.mime import header_safe
from mailer.core.model import Program
from mailer.core.occurrence import Occurrence
from mailer.errors import InputError
from mailer.load.program import load_program
from mailer.load.templates import renderer_for

NOW = datetime(2019, 8, 1, 13, tzinfo=UTC)


@pytest.fixture
def program(program_dir: Path) -> Program:
    """The sample program, loaded."""
    return load_program(program_dir)


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def build(program: Program, occ: Occurrence, secret: bytes = b"s") -> bytes:
    rendered = renderer_for(program.templates_dir).render(context(program, occ), occ.step.template)
    return build_message(occ, rendered, msg_id=message_id(secret, occ.key, "example.org"), now=NOW)


def test_every_step_renders_for_every_pair_in_text_and_html(program: Program) -> None:
    renderer = renderer_for(program.templates_dir)
    rendered: set[tuple[str, str, str | None]] = set()
    for occ in planner.year_schedule(program):
        r = renderer.render(context(program, occ), occ.step.template)
        first = occ.pair.person(occ.role).first_name if occ.role else occ.pair.mentor.first_name
        assert r.subject and "\n" not in r.subject
        assert first in r.text, (occ.key, r.text[:200])
        assert "<html" in r.html and first in r.html.replace("&#39;", "'")
        assert "None" not in r.text
        rendered.add((occ.cohort.id, occ.step.key, occ.role))
    expected = {(c.id, s.key, r) for c in program.cohorts for s in c.steps
                for r in (("mentor", "mentee") if s.to == "each" else (None,))}
    assert rendered == expected


def test_readings_lists_every_citation(program: Program) -> None:
    occ = next(o for o in planner.year_schedule(program) if o.step.key == "readings")
    r = renderer_for(program.templates_dir).render(context(program, occ), "readings")
    for cite in program.readings:
        assert cite in " ".join(r.text.split())  # wrapped at 72 columns, never inside a word
    assert "Hussey, L. K., &amp; Campbell-Meier" in r.html  # autoescaped in HTML only


def test_each_partner_gets_their_own_wording(program: Program) -> None:
    occs = [o for o in planner.year_schedule(program) if o.key.startswith("2019-2020/p01/midyear/")]
    renderer = renderer_for(program.templates_dir)
    mentor, mentee = (renderer.render(context(program, o), o.step.template) for o in occs)
    assert mentor.text != mentee.text
    # the text opens with the message's heading (its subject), then the greeting
    assert mentor.text.split("\n\n")[1] == "Hi Renée," and mentee.text.split("\n\n")[1] == "Hi José,"


def test_two_non_ascii_recipients_both_survive_parsing(program: Program) -> None:
    """CPython gh-100884: EmailMessage would encode the comma and lose the second address."""
    occ = next(o for o in planner.year_schedule(program) if o.key == "2019-2020/p02/welcome")
    msg = parse(build(program, occ))
    assert [a.display_name for a in msg["To"].addresses] == ["Dagný Jónsdóttir", "Zoë Ng"]
    assert [a.addr_spec for a in msg["To"].addresses] == ["dagny.jonsdottir@example.org", "zoe.ng@example.com"]
    assert msg["From"].addresses[0].display_name == occ.cohort.coordinator.name
    assert msg["Reply-To"].addresses[0].addr_spec == "mentoring@example.org"
    assert "\r\n\r\nHi Dagný and Zoë,\r\n" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_same_plan_same_bytes_and_message_id_is_keyed(program: Program) -> None:
    occ = next(o for o in planner.year_schedule(program) if o.key == "2019-2020/p01/welcome")
    assert build(program, occ) == build(program, occ)
    assert build(program, occ, b"a") != build(program, occ, b"b")  # unguessable without the secret
    assert parse(build(program, occ))["Message-ID"] == message_id(b"s", occ.key, "example.org")


@pytest.mark.parametrize("evil", [
    "Eve\r\nBcc: victim@example.com",
    "Eve\nX-Injected: 1",
    "Eve\rX-Injected: 1",
    "Eve\x00\x0bX-Injected: 1",
    "Eve\u2028X-Injected: 1",
    "=?utf-8?q?Eve=0D=0AX-Injected:_1?=",
    "Eve " + "x" * 300 + "\r\n X-Injected: 1",
    'Eve "quoted", <angle> @at',
])
def test_no_name_or_subject_can_add_a_header(program: Program, evil: str) -> None:
    import dataclasses

    occ = next(o for o in planner.year_schedule(program) if o.key == "2019-2020/p01/welcome")
    mentor = dataclasses.replace(occ.pair.mentor, name=evil)
    pair = dataclasses.replace(occ.pair, mentor=mentor)
    occ = dataclasses.replace(occ, pair=pair)
    rendered = renderer_for(program.templates_dir).render(context(program, occ), occ.step.template)
    rendered = dataclasses.replace(rendered, subject=evil)
    msg = parse(build_message(occ, rendered, msg_id="<x@example.org>", now=NOW))
    names = [k.lower() for k in msg]
    assert "bcc" not in names and "x-injected" not in names
    assert len(msg["To"].addresses) == 2
    assert len(msg.get_all("Subject")) == 1
    assert header_safe(evil).split()[0] in str(msg["Subject"])


def test_undefined_variable_names_template_and_line(program: Program) -> None:
    tpl = program.templates_dir / "trend.txt.j2"
    lines = tpl.read_text(encoding="utf-8").splitlines()
    body = next(i for i, line in enumerate(lines) if "block body" in line)
    lines.insert(body + 1, "{{ pair.mentor.nickname }}")
    tpl.write_text("\n".join(lines), encoding="utf-8")
    occ = next(o for o in planner.year_schedule(program) if o.step.key == "trend")
    with pytest.raises(InputError) as err:
        renderer_for(program.templates_dir).render(context(program, occ), "trend")
    assert f"templates/email/trend.txt.j2:{body + 2}: undefined variable" in str(err.value)


def test_syntax_error_names_template_and_line(program: Program) -> None:
    tpl = program.templates_dir / "webinar.html.j2"
    tpl.write_text("{% extends 'base.html.j2' %}\n{% block body %}\n{% if %}\n{% endblock %}\n", encoding="utf-8")
    occ = next(o for o in planner.year_schedule(program) if o.step.key == "webinar")
    with pytest.raises(InputError, match=r"templates/email/webinar.html.j2:3: template syntax error"):
        renderer_for(program.templates_dir).render(context(program, occ), "webinar")


def test_sandbox_refuses_unsafe_attribute_access(program: Program) -> None:
    tpl = program.templates_dir / "webinar.txt.j2"
    tpl.write_text("{% block subject %}x{% endblock %}{{ pair.__class__.__mro__ }}", encoding="utf-8")
    occ = next(o for o in planner.year_schedule(program) if o.step.key == "webinar")
    with pytest.raises(InputError, match=r"webinar\.txt\.j2"):
        renderer_for(program.templates_dir).render(context(program, occ), "webinar")


def test_the_interpreter_still_needs_the_mime_workaround() -> None:
    """mime.py stands in for `email`'s generator because of CPython gh-100884 (CVE-2025-1795: a comma between
    addresses encoded, so the second recipient is lost) and CVE-2024-6923 (a newline in a header value passes
    through and adds a header). When the running Python has both fixes this fails, to say mime.py can go once
    requires-python reaches that version."""
    import email.errors
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["To"] = "01234567890123456789012345678901234567890123456789012345678901@example.org, ä <foo@example.org>"
    comma_encoded = "=?utf-8?q?=2C?=" in msg.as_string()
    header_write_checked = hasattr(email.errors, "HeaderWriteError")  # added by the CVE-2024-6923 fix
    assert comma_encoded or not header_write_checked, (
        f"Python {sys.version.split()[0]} has the fixes for gh-100884 and CVE-2024-6923: mailer/core/mime.py "
        "can give way to email.message.EmailMessage once this is the oldest supported Python")
