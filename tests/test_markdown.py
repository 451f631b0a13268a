"""Markdown steps: the conversion to HTML and plain text, the escaping of values, and programs written in it."""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

import pytest

from mailer.core import markdown
from mailer.core.render import Renderer, template_kind
from mailer.errors import InputError
from mailer.load.program import load_program
from mailer.load.templates import renderer_for, step_template_problems
from tests.emails import REPO, cli, copy_sample, html_words, markdown_program, rehearse, text_words

NASTY = ["*Smith*", "[x](javascript:alert(1))", "<img src=x onerror=alert(1)>", "_a_ `b` **c** ~d~",
         "&amp; &lt;b&gt; \\*", "# Heading", "1. not a list", "- nor this", "<https://evil.example/>",
         "line\nbreak", "O'Brien \"Q\" | pipe"]


# --- the conversion --------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "text", "fragment"), [
    ("Hi **Ann** and _Bob_.", "Hi Ann and Bob.\n", "<p>Hi <strong>Ann</strong> and <em>Bob</em>.</p>\n"),
    ("See [the form](https://example.org/f?a=1&b=2).", "See the form <https://example.org/f?a=1&b=2>.\n",
     '<a href="https://example.org/f?a=1&amp;b=2">the form</a>'),
    ("<https://example.org/x>", "<https://example.org/x>\n", '<a href="https://example.org/x">'),
    ("Mail <ann@example.org>.", "Mail ann@example.org.\n", '<a href="mailto:ann@example.org">ann@example.org</a>'),
    ("- one\n- two\n", "- one\n- two\n", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>"),
    ("3. three\n4. four\n", "3. three\n4. four\n", '<ol start="3">'),
    ("- a\n\n  more\n- b\n", "- a\n\n  more\n\n- b\n", "<li>\n<p>a</p>\n<p>more</p>\n</li>"),
    ("- outer\n  - inner\n", "- outer\n  - inner\n", "<ul>\n<li>inner</li>\n</ul>"),
    ("# Title\n\nBody", "Title\n\nBody\n", "<h2>Title</h2>"),  # the layout's h1 is the only h1
    ("> *quoted*", "> quoted\n", "<blockquote>\n<p><em>quoted</em></p>"),
    ("    code  kept", "    code  kept\n", "<pre><code>code  kept"),
    ("one  \ntwo\nthree", "one\ntwo three\n", "one<br />\ntwo\nthree"),
    ("a\n\n---\n\nb", "a\n\n---\n\nb\n", "<hr />"),
    ("<b>raw</b> <script>x</script>", "<b>raw</b> <script>x</script>\n", "&lt;b&gt;raw&lt;/b&gt; &lt;script&gt;"),
    ("![logo](https://example.org/l.png)", "!logo <https://example.org/l.png>\n", "!"),  # no image is fetched
    ("[x](javascript:alert(1))", "[x](javascript:alert(1))\n", "<p>[x](javascript:alert(1))</p>"),
])
def test_one_markdown_source_gives_both_parts(source: str, text: str, fragment: str) -> None:
    out = markdown.to_html(source)
    assert markdown.to_text(source) == text
    assert fragment in out
    assert "<img" not in out and "<script" not in out
    assert not any(href.startswith("javascript:") for href in re.findall(r'href="([^"]*)"', out))
    assert text_words(markdown.to_text(source)) == html_words(out)


def test_text_wraps_at_72_columns_and_never_breaks_a_url() -> None:
    url = "https://example.org/" + "a-very-long-path/" * 6 + "end"
    source = ("word " * 40 + f"[the form]({url}) " + "tail-word " * 10 + "\n\n- " + "listed " * 20
              + "\n\n1. " + "numbered " * 12)
    text = markdown.to_text(source)
    for line in text.splitlines():
        assert len(line) <= 72 or len(line.split()) == 1, line  # only a single unbreakable token runs over
    assert f"<{url}>" in text.split()  # whole, on a line of its own
    assert "  listed" in text and "   numbered" in text  # continuation lines sit under the item's text
    assert "tail-word" in text.split()  # hyphenated words are not broken either


@pytest.mark.parametrize("value", NASTY)
def test_an_escaped_value_renders_as_its_literal_text(value: str) -> None:
    shown = " ".join(value.split())  # a line break in a value is a space
    source = f"Hi {markdown.escape(value)}, welcome."
    assert markdown.to_text(source) == f"Hi {shown}, welcome.\n"
    escaped = shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    assert markdown.to_html(source) == f"<p>Hi {escaped}, welcome.</p>\n"
    link = markdown.to_html(f"[the form]({markdown.escape('https://example.org/a_(b)*c')})")
    assert link == '<p><a href="https://example.org/a_(b)*c">the form</a></p>\n'  # escapes survive in a link


# --- which kind of step, and check's report on it --------------------------------------------

@pytest.mark.parametrize(("files", "kind", "problems"), [
    ({"t.md.j2"}, "markdown", []),
    ({"t.txt.j2", "t.html.j2"}, "pair", []),
    ({"t.md.j2", "t.txt.j2", "t.html.j2"}, "pair", ["templates/email/t.md.j2 and templates/email/t.txt.j2 and "
                                                     "templates/email/t.html.j2 both exist"]),
    ({"t.md.j2", "t.html.j2"}, "pair", ["templates/email/t.md.j2 and templates/email/t.html.j2 both exist"]),
    ({"t.txt.j2"}, "pair", ["templates/email/t.html.j2 does not exist"]),
    (set(), "pair", ["templates/email/t.txt.j2 does not exist, nor t.html.j2 or t.md.j2: a step needs one "
                     "Markdown file t.md.j2, or the pair t.txt.j2 and t.html.j2"]),
])
def test_a_step_is_one_markdown_file_or_a_pair(tmp_path: Path, files: set[str], kind: str,
                                               problems: list[str]) -> None:
    for name in files:
        (tmp_path / name).write_text("x", encoding="utf-8")
    assert template_kind(files, "t") == kind
    found = step_template_problems(tmp_path, "t")
    assert len(found) == len(problems) and all(f.startswith(p) for f, p in zip(found, problems, strict=True))


def test_check_names_a_step_with_both_kinds(program_dir: Path) -> None:
    (program_dir / "templates/email/trend.md.j2").write_text("{% block subject %}x{% endblock %}\nbody\n",
                                                             encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_program(program_dir)
    assert "cohorts/program.toml" in str(err.value)
    assert "templates/email/trend.md.j2 and templates/email/trend.txt.j2 and templates/email/trend.html.j2 both " \
           "exist: keep the Markdown file or the pair, not both" in str(err.value)
    result = cli(program_dir, "check")
    assert result.returncode == 2 and "trend.md.j2 and" in result.stdout + result.stderr


def _renderer(folder: Path, **templates: str) -> Renderer:
    base = {"base.txt.j2": "{{ subject }}\n\n{% block body %}{% endblock %}\n-- {{ who }}\n",
            "base.html.j2": "<title>{{ subject }}</title><h1>{{ subject }}</h1>{% block body %}{% endblock %}"
                            "<p>{{ who }}</p>"}
    for name, source in {**base, **templates}.items():
        (folder / name).write_text(source, encoding="utf-8")
    return renderer_for(folder)


def test_the_subject_and_the_layout_see_values_as_they_are_and_the_body_as_markdown_data(tmp_path: Path) -> None:
    r = _renderer(tmp_path, **{"s.md.j2": "{% block subject %}Hello {{ who }}{% endblock %}\nDear {{ who }}, *see* "
                                "[the form]({{ url }}).\n"})
    out = r.render({"who": "*Smith* <b>", "url": "https://example.org/f"}, "s")
    assert out.subject == "Hello *Smith* <b>"
    assert out.text == "Hello *Smith* <b>\n\nDear *Smith* <b>, see the form <https://example.org/f>.\n-- *Smith* <b>\n"
    assert out.html == ("<title>Hello *Smith* &lt;b&gt;</title><h1>Hello *Smith* &lt;b&gt;</h1><p>Dear *Smith* "
                        '&lt;b&gt;, <em>see</em> <a href="https://example.org/f">the form</a>.</p>\n'
                        "<p>*Smith* &lt;b&gt;</p>")


def test_the_pair_wins_and_markdown_errors_name_the_markdown_file(tmp_path: Path) -> None:
    r = _renderer(tmp_path, **{"p.md.j2": "{% block subject %}md{% endblock %}\nmd body\n",
                     "p.txt.j2": "{% extends 'base.txt.j2' %}{% block subject %}pair{% endblock %}",
                     "p.html.j2": "{% extends 'base.html.j2' %}",
                     "bad.md.j2": "{% block subject %}s{% endblock %}\nline two\n{{ nope }}\n",
                     "nosubject.md.j2": "just a body\n"})
    assert r.render({"who": "x"}, "p").subject == "pair"
    with pytest.raises(InputError, match=r"templates/email/bad\.md\.j2:3: undefined variable nope"):
        r.render({"who": "x"}, "bad")
    with pytest.raises(InputError, match=r"nosubject\.md\.j2: subject block is missing"):
        r.render({"who": "x"}, "nosubject")


# --- a program whose every step is Markdown, end to end ---------------------------------------

def test_a_program_written_in_markdown_checks_previews_and_rehearses(tmp_path: Path) -> None:
    program = markdown_program(tmp_path / "program")
    assert not list((program / "templates/email").glob("[!b]*.txt.j2"))  # no pair is left
    check = cli(program, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("ok: 2 cohort(s), 16 pair(s)")
    text = cli(program, "preview", "--pair", "p01", "--step", "midyear", "--role", "mentor")
    assert text.returncode == 0, text.stderr
    assert "Please also fill in the mid-year evaluation\n<https://example.org/mentoring/2019-2020/midyear>." \
        in text.stdout
    page = cli(program, "preview", "--pair", "p02", "--step", "resumes", "--format", "html")
    assert "<li><strong>Direction:</strong> what does it say about Zoë’s career goals" in \
        page.stdout.replace("'", "’")
    assert page.stdout.count("<h1") == 1 and '<html lang="en">' in page.stdout
    mails = rehearse(program, tmp_path / "outbox")
    assert len(mails) == 181
    steps = {m.step for m in mails}
    assert {"welcome", "readings", "midyear", "meetup-midwinter-2020", "wrap-up"} <= steps
    for mail in mails:
        for line in mail.text.splitlines():
            assert len(line) <= 72 or len(line.split()) == 1, f"{mail.path.name}: {line!r}"
        assert text_words(mail.text) == html_words(mail.html), mail.path.name
        for href in re.findall(r'href="([^"]+)"', mail.html):
            assert f"<{html.unescape(href)}>" in mail.text  # every link, whole, in the text part


def _poison(program: Path) -> None:
    """Roster and cohort values that are markup in Markdown or HTML, in the sample's first pairs."""
    roster = program / "cohorts/2019-2020/roster.csv"
    with roster.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    rows[1][1], rows[1][3] = "*Smith*", "[x](javascript:alert(1))"  # p01: first names are these
    rows[3][1], rows[3][3] = "<img/src=x/onerror=alert(1)>", "_Ann_ Lee"  # p03
    with roster.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    cohort = program / "cohorts/2019-2020/cohort.toml"
    toml = cohort.read_text(encoding="utf-8")
    toml = toml.replace('name = "ALCTS Mentoring Program 2019–2020"',
                        'name = "Cohort <img src=x onerror=alert(1)> *one* [x](javascript:alert(1))"')
    toml = toml.replace('name = "Laura Whitfield"', 'name = "**Laura** <b>W</b>"')
    cohort.write_text(toml, encoding="utf-8")


@pytest.mark.parametrize("kind", ["pair", "markdown"])
def test_names_that_look_like_markup_are_literal_in_every_step(tmp_path: Path, kind: str) -> None:
    program = (copy_sample if kind == "pair" else markdown_program)(tmp_path / "program")
    _poison(program)
    mails = [m for m in rehearse(program, tmp_path / "outbox")
             if str(m.message["X-Mentor-Mailer-Key"]).startswith("2019-2020/")]
    cohort_name = "Cohort <img src=x onerror=alert(1)> *one* [x](javascript:alert(1))"
    steps: set[str] = set()
    for mail in mails:
        key = str(mail.message["X-Mentor-Mailer-Key"])
        literal = [cohort_name, "**Laura** <b>W</b>"]
        if "/p01/" in key:
            literal += ["*Smith*", "[x](javascript:alert(1))"]
            steps.add(mail.step)
        if "/p03/" in key:
            literal += ["<img/src=x/onerror=alert(1)>"]
        flowed = " ".join(mail.text.split())  # a long value may wrap onto the next line
        for value in literal:
            assert value in flowed, f"{mail.path.name}: {value!r} not literal in the text part"
            assert html.escape(value, quote=False) in mail.html, f"{mail.path.name}: {value!r} not in the HTML"
        assert not re.search(r"<(?:img|b|script)\b", mail.html), mail.path.name
        assert "<em>Smith" not in mail.html and "<strong>Laura" not in mail.html
        # https links, or the check-in mailto: links to the coordinator (a token in a percent-encoded subject)
        assert all(h.startswith("https://") or re.fullmatch(r"mailto:mentoring@example\.org\?subject=[\w%.~-]+", h)
                   for h in re.findall(r'href="([^"]*)"', mail.html)), mail.path.name
        assert text_words(mail.text) == html_words(mail.html), mail.path.name
    cohort = next(c for c in load_program(program).cohorts if c.id == "2019-2020")
    assert steps >= {s.key for s in cohort.steps}  # every step of the year reached p01


def test_the_readme_example_step_works_as_written(program_dir: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("#### A step in one Markdown file", 1)[1]
    example = re.search(r"```markdown\n(.*?)```", section, re.S)
    assert example, "the README's Markdown step example is gone"
    (program_dir / "templates/email/reading_for_two.md.j2").write_text(example.group(1), encoding="utf-8")
    with (program_dir / "cohorts/program.toml").open("a", encoding="utf-8") as f:
        f.write('\n[[steps]]\nkey = "reading-for-two"\ntemplate = "reading_for_two"\nto = "pair"\n'
                "month = 5\nday = 15\n")
    assert cli(program_dir, "check").returncode == 0
    text = cli(program_dir, "preview", "--pair", "p02", "--step", "reading-for-two").stdout
    assert text.startswith("Subject: Your mentoring month: a reading for two\n")
    assert "This month, pick one article each and swap them before you meet. Then\nfill in the mid-year " \
           "evaluation\n<https://example.org/mentoring/2019-2020/midyear>.\n" in text
    assert "- what surprised you;\n- one idea Zoë could try at work." in text
    page = cli(program_dir, "preview", "--pair", "p02", "--step", "reading-for-two", "--format", "html").stdout
    assert "<strong>one article</strong>" in page and "<li>one idea Zoë could try at work.</li>" in page
