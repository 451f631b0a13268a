"""The coordinator's report page: one self-contained HTML file from the ledger's rows and the plan.

Pure: no clock, no I/O. Every value arrives as an argument, and the same inputs give the same page
(rows and occurrences are sorted here, so their order does not matter). No external assets: the CSS is
inline, there is no script, and no font or image is fetched.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from html import escape

from mailer.core.heard import Heard
from mailer.core.heard import sections as heard_sections
from mailer.core.keys import parse
from mailer.core.model import Cohort, Pair, Program, Step
from mailer.core.occurrence import Occurrence
from mailer.core.records import DEFERRED, FAILED, SENT, SKIPPED, UNCERTAIN, Row

STATES = (SENT, SKIPPED, FAILED, DEFERRED, UNCERTAIN)
TROUBLE = (FAILED, DEFERRED, UNCERTAIN)
_SEVERITY = (FAILED, UNCERTAIN, DEFERRED, SENT, SKIPPED)  # a tie for the dominant state goes to the worse
_MARK = {SENT: "✓", SKIPPED: "–", FAILED: "✗", DEFERRED: "↻", UNCERTAIN: "?", "upcoming": "→", "other": "•"}
_LEGEND = (
    (SENT, "delivered (to the server or the outbox)"),
    (SKIPPED, "not sent, by the year's rules (the reason is in the ledger)"),
    (FAILED, "refused for good by the server; never retried"),
    (DEFERRED, "transient trouble; a later run tries again"),
    (UNCERTAIN, "the connection dropped after the body; resent once by the next run"),
    ("upcoming", "due in the next run's plan"),
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

CSS = """
:root{color-scheme:light;--ink:#1d2329;--muted:#56606b;--line:#d5dbe1;
--sent:#17692f;--sent-bg:#e0f2e5;--skipped:#4d5863;--skipped-bg:#eceff2;--failed:#a4231b;--failed-bg:#fbe2df;
--deferred:#7a4f00;--deferred-bg:#fff0c7;--uncertain:#5d36a3;--uncertain-bg:#efe7fb;
--upcoming:#17569b;--upcoming-bg:#e4eefa;--other:#56606b;--other-bg:#f4f5f7}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1440px;padding:1.25rem 1rem 3rem;color:var(--ink);background:#fff;
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans","DejaVu Sans",sans-serif}
h1{font-size:1.6rem;margin:0 0 .2rem}h2{font-size:1.3rem;margin:2rem 0 .4rem;padding-top:.4rem;
border-top:2px solid var(--ink)}
.meta,.facts{color:var(--muted);margin:.2rem 0}
nav ul,.legend{display:flex;flex-wrap:wrap;gap:.35rem 1.2rem;list-style:none;padding:0;margin:.6rem 0}
a{color:#17569b}
.legend li{display:flex;align-items:center;gap:.4rem;font-size:.9rem;color:var(--muted)}
.scroll{overflow-x:auto}
caption{text-align:left}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{border:1px solid var(--line);padding:.3rem .4rem;text-align:left;vertical-align:top}
thead th{background:#f4f5f7;font-weight:600;white-space:nowrap}
.timeline{table-layout:fixed;min-width:1100px}
.timeline col.step{width:10rem}
.timeline td{padding:.25rem}
th[scope=row] .key{display:block;font-weight:600;overflow-wrap:anywhere}
th[scope=row] .desc{display:block;font-weight:400;color:var(--muted);font-size:.8rem;line-height:1.3}
.now{background:#fafbe6}
thead th.now{background:#f0f1c4}thead th small{display:block;font-weight:400;line-height:1}
.cell{border-left:3px solid var(--c);background:var(--bg)}
.cell time{display:block;font-size:.78rem;color:var(--muted)}
.badge,.n{display:inline-block;padding:0 .3rem;border-radius:3px;color:var(--c);background:var(--bg);
border:1px solid var(--c);font-weight:600;white-space:nowrap;line-height:1.5}
.n{display:block;width:max-content;max-width:100%;margin:.12rem 0;padding:0 .15rem;font-size:.72rem;background:#fff;
white-space:normal;font-weight:400}
.n strong{font-weight:700}
.extra{display:block;font-size:.78rem;color:var(--muted)}
.cell.future,.cell.none{color:var(--muted);font-size:.8rem;border-left-style:dashed}
.s-sent{--c:var(--sent);--bg:var(--sent-bg)}.s-skipped{--c:var(--skipped);--bg:var(--skipped-bg)}
.s-failed{--c:var(--failed);--bg:var(--failed-bg)}.s-deferred{--c:var(--deferred);--bg:var(--deferred-bg)}
.s-uncertain{--c:var(--uncertain);--bg:var(--uncertain-bg)}
.s-upcoming{--c:var(--upcoming);--bg:var(--upcoming-bg)}.s-other{--c:var(--other);--bg:var(--other-bg)}
.cell.s-upcoming{border-left-style:dashed}
tfoot th,tfoot td{background:#f4f5f7;font-weight:600}
tfoot .n{display:inline-block;margin:.1rem .3rem .1rem 0}
.list td.reply{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.8rem;word-break:break-word}
.list ul{margin:0;padding-left:1rem}
.ok{padding:.5rem .8rem;border-left:4px solid var(--sent);background:var(--sent-bg)}
@media print{
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
@page{size:A4 landscape;margin:10mm}
html{font-size:10.5px}body{max-width:none;padding:0;font-size:10px}nav{display:none}thead th{white-space:normal}
.scroll{overflow:visible}.timeline{min-width:0}h2{break-after:avoid}
tr,.legend{break-inside:avoid}thead{display:table-header-group}a{color:inherit;text-decoration:none}
}
"""


Tally = Mapping[tuple[str, str, str, str], int]  # (cohort, step, "" | "update" | "cancel", state) -> messages


def tally(rows: Iterable[Row]) -> Tally:
    """The counts the page shows, from rows (the ledger counts them in SQL: `Ledger.report_counts`)."""
    return Counter((r.cohort, r.step, parse(r.key).change or "", r.state) for r in rows)


def troubled(rows: Iterable[Row]) -> list[Row]:
    """The rows the failures table lists (the ledger selects them itself: `Ledger.trouble`)."""
    return [r for r in rows if r.state in TROUBLE or r.refused]


def render_report(program: Program, counts: Tally, trouble: Sequence[Row], upcoming: Sequence[Occurrence], *,
                  now: datetime, title: str | None = None, heard: Heard | None = None,
                  no_contact_days: int = 45) -> str:
    """One self-contained HTML page (no external assets: inline CSS, no JS needed, no fonts/images fetched).
    The ledger comes in counted, not row by row: memory stays flat however long the year's ledger grows."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    trouble = sorted((r for r in trouble if r.state in TROUBLE or r.refused), key=lambda r: (r.due_at, r.key))
    upcoming = sorted(upcoming, key=lambda o: (o.due_at, o.key))
    title = title or f"{program.name}: report"
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # a person reads the program's own time; the machine-readable attribute stays in UTC
    local = now.astimezone(program.cohorts[0].timezone) if program.cohorts else now.astimezone(UTC)
    shown = f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
    nav = "".join(f'<li><a href="#{_id(c.id)}">{_e(c.name)}</a></li>' for c in program.cohorts)
    parts = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header>\n<h1>{_e(title)}</h1>\n"
        f'<p class="meta">{_e(program.name)} · generated <time datetime="{stamp}">{_e(shown)}</time></p>\n'
        f'<nav aria-label="Sections"><ul>{nav}'
        + ('<li><a href="#heard">Replies and contact</a></li>' if heard is not None else "")
        + f'<li><a href="#failures">Failures ({len(trouble)})</a></li>'
        f'<li><a href="#plan">Next run\'s plan ({len(upcoming)})</a></li></ul></nav>\n'
        '<ul class="legend" aria-label="Legend: what each state means">'
        + "".join(f'<li>{_badge(s, s)} {_e(text)}</li>' for s, text in _LEGEND) + "</ul>\n</header>\n<main>\n"
    ]
    parts += [_cohort(c, counts, upcoming, now) for c in program.cohorts]
    if heard is not None:
        parts.append(_heard(program, heard, now, no_contact_days))
    parts += [_failures(program, trouble), _plan(upcoming), "</main>\n</body>\n</html>\n"]
    return "".join(parts)


def _cohort(cohort: Cohort, counts: Tally, upcoming: Sequence[Occurrence], now: datetime) -> str:
    months = _months(cohort.start, cohort.end) or [(cohort.start.year, cohort.start.month)]
    today = now.astimezone(cohort.timezone).date()
    current = (today.year, today.month)
    mine = {(step, kind, state): n for (c, step, kind, state), n in counts.items() if c == cohort.id}
    head = "".join(f'<th scope="col"{_now(m == current)}>{_MONTHS[m[1] - 1]} {m[0]}'
                   f'{"<small>now</small>" if m == current else ""}</th>' for m in months)
    body = []
    for step in cohort.steps:
        col = min(max((step.due.year, step.due.month), months[0]), months[-1])
        cells = "".join(_cell(step, {(k, st): n for (s, k, st), n in mine.items() if s == step.key},
                              sum(1 for o in upcoming if o.cohort.id == cohort.id and o.step.key == step.key),
                              today, m == current)
                        if m == col else f"<td{_now(m == current)}></td>" for m in months)
        body.append(f'<tr data-step="{_e(step.key)}"><th scope="row"><span class="key">{_e(step.key)}</span>'
                    f'<span class="desc">{_e(step.description)}</span></th>{cells}</tr>\n')
    for gone in sorted({s for (s, _, _) in mine} - {s.key for s in cohort.steps}):  # removed after it went out
        was = Counter({st: n for (s, k, st), n in mine.items() if s == gone and not k})
        body.append(f'<tr data-step="{_e(gone)}"><th scope="row"><span class="key">{_e(gone)}</span>'
                    '<span class="desc">no longer in the program</span></th>'
                    f'<td colspan="{len(months)}">{" ".join(_count(x, was[x]) for x in _states(was))}</td></tr>\n')
    totals: Counter[str] = Counter()
    for (_, kind, state), n in mine.items():
        if not kind:  # updates and cancellations are told apart, never counted as invitations sent
            totals[state] += n
    changes = sum(n for (_, kind, _), n in mine.items() if kind)
    coming = sum(1 for o in upcoming if o.cohort.id == cohort.id)
    total_badges = " ".join(_count(s, totals[s]) for s in _states(totals)) or "nothing recorded yet"
    if changes:
        total_badges += f' <span class="extra">and {changes} invitation update(s) or cancellation(s)</span>'
    if coming:
        total_badges += " " + _count("upcoming", coming)
    return (
        f'<section id="{_id(cohort.id)}" aria-labelledby="{_id(cohort.id)}-h">\n'
        f'<h2 id="{_id(cohort.id)}-h">{_e(cohort.name)}</h2>\n'
        f'<p class="facts">Cohort <code>{_e(cohort.id)}</code> · <strong>{len(cohort.pairs)} pairs</strong> · '
        f"{len(cohort.steps)} steps · {cohort.start.isoformat()} to {cohort.end.isoformat()} · "
        f"times in {_e(str(cohort.timezone))}</p>\n"
        f'<div class="scroll" role="region" aria-label="Timeline of {_e(cohort.name)}" tabindex="0">\n'
        f'<table class="timeline"><caption class="facts">Timeline: each step in the '
        f"month it is due, with its messages counted by state</caption>\n"
        f'<colgroup><col class="step">{"<col>" * len(months)}</colgroup>\n'
        f'<thead><tr><th scope="col">Step</th>{head}</tr></thead>\n<tbody>\n{"".join(body)}</tbody>\n'
        f'<tfoot><tr><th scope="row">Totals ({sum(totals.values())} messages)</th>'
        f'<td colspan="{len(months)}">{total_badges}</td></tr></tfoot>\n'
        "</table>\n</div>\n</section>\n"
    )


def _cell(step: Step, counts: Mapping[tuple[str, str], int], coming: int, today: date, now_col: bool) -> str:
    plain = Counter({state: n for (kind, state), n in counts.items() if not kind})
    lines = [_count(s, plain[s]) for s in _states(plain)]
    for kind in ("update", "cancel"):
        states = Counter({state: n for (k, state), n in counts.items() if k == kind})
        if states:
            how = ", ".join(f"{s}: {states[s]}" for s in _states(states))
            lines.append(f'<span class="extra">{kind}s: {sum(states.values())} ({how})</span>')
    if coming:
        lines.append(_count("upcoming", coming))
    if plain:
        kind = max(_SEVERITY, key=lambda s: plain[s]) if any(plain[s] for s in _SEVERITY) else "other"
    elif coming:
        kind = "upcoming"
    elif step.due > today:
        kind, lines = "future", [*lines, "not yet due"]
    else:
        kind, lines = "none", [*lines, "nothing recorded"]
    css = f"cell s-{kind}" if kind not in ("future", "none") else f"cell {kind} s-other"
    day = f"{step.due.day} {_MONTHS[step.due.month - 1]}"
    return (f'<td class="{css}{" now" if now_col else ""}"><time datetime="{step.due.isoformat()}">due {day}'
            f'</time>{"".join(lines)}</td>')


def _heard(program: Program, heard: Heard, now: datetime, days: int) -> str:
    """What the inbox heard: silent pairs first, RSVPs, check-ins, suppressed addresses, out-of-office notes."""
    out = ['<section id="heard" aria-labelledby="heard-h">\n<h2 id="heard-h">Replies and contact</h2>\n']
    for title, lines in heard_sections(program, heard, cohorts=[c.id for c in program.cohorts], now=now,
                                       days=days):
        out.append(f"<h3>{_e(title)}</h3>\n<ul>\n" + "".join(f"<li>{_e(line)}</li>\n" for line in lines)
                   + "</ul>\n")
    return "".join(out) + "</section>\n"


def _failures(program: Program, trouble: Sequence[Row]) -> str:
    head = '<section id="failures" aria-labelledby="failures-h">\n<h2 id="failures-h">Failures</h2>\n'
    if not trouble:
        return head + '<p class="ok">No failures.</p>\n</section>\n'
    out = []
    for r in trouble:
        refused = "".join(f"<li>{_e(rcpt)}: {_e(reply)}</li>" for rcpt, reply in sorted(r.refused.items()))
        reply = (_e(r.reason) if r.reason else "") + (f"<ul>{refused}</ul>" if refused else "")
        out.append(f"<tr><td>{_e(r.cohort)}</td><td>{_pair(program, r.cohort, r.pair)}</td>"
                   f"<td>{_e(_row_step(r))}</td><td>{_e(r.due_at[:10])}</td>"
                   f'<td>{_badge(r.state if r.state in STATES else "other", r.state)}'
                   f'{" " + _badge(FAILED, "refused") if r.refused else ""}</td>'
                   f'<td class="reply">{reply}</td><td>{r.attempts}</td></tr>\n')
    return (head + f"<p class=\"facts\">{len(trouble)} message(s) failed, deferred, uncertain, or refused by "
            "some recipient.</p>\n<div class=\"scroll\">\n<table class=\"list\">\n<thead><tr>"
            + "".join(f'<th scope="col">{h}</th>' for h in
                      ("Cohort", "Pair", "Step", "Due", "State", "Reason / server reply", "Attempts"))
            + f"</tr></thead>\n<tbody>\n{''.join(out)}</tbody>\n</table>\n</div>\n</section>\n")


def _plan(upcoming: Sequence[Occurrence]) -> str:
    head = '<section id="plan" aria-labelledby="plan-h">\n<h2 id="plan-h">Next run\'s plan</h2>\n'
    if not upcoming:
        return head + '<p class="facts">Nothing is due in this period.</p>\n</section>\n'
    out = []
    for o in upcoming:
        local = o.due_at.astimezone(o.cohort.timezone)
        to = ", ".join(o.pair.person(role).email for role in o.addressed()) + o.left_out_note
        out.append(f'<tr><td><time datetime="{local.isoformat()}">{local.date().isoformat()}</time> '
                   f"{local:%H:%M}</td><td>{_e(o.cohort.id)}</td><td>{_pair_names(o.pair)}</td>"
                   f"<td>{_e(_occ_step(o))}</td><td>{_e(to)}</td></tr>\n")
    return (head + f'<p class="facts">{len(upcoming)} message(s); dates and times in each cohort\'s time zone.'
            '</p>\n<div class="scroll">\n<table class="list">\n<thead><tr>'
            + "".join(f'<th scope="col">{h}</th>' for h in ("Date", "Cohort", "Pair", "Step", "To"))
            + f"</tr></thead>\n<tbody>\n{''.join(out)}</tbody>\n</table>\n</div>\n</section>\n")


def _months(start: date, end: date) -> list[tuple[int, int]]:
    out, (y, m) = [], (start.year, start.month)
    while (y, m) <= (end.year, end.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _states(counts: Counter[str]) -> list[str]:
    """The states present, the usual five in a fixed order and any other (say, `sending`) after them."""
    return [s for s in STATES if counts[s]] + sorted(s for s in counts if s not in STATES and counts[s])


def _count(state: str, n: int) -> str:
    """A count in a cell or the totals: the state in words, then the number, outlined in the state's colour."""
    css = state if state in (*STATES, "upcoming") else "other"
    return f'<span class="n s-{css}">{_e(state)}: <strong>{n}</strong></span>'


def _badge(css: str, text: str) -> str:
    """A filled badge (legend, failures): the state's mark and name on its colour."""
    return (f'<span class="badge s-{css}"><span aria-hidden="true">{_MARK.get(css, _MARK["other"])}</span> '
            f"{_e(text)}</span>")


def _pair(program: Program, cohort_id: str, pair_id: str) -> str:
    cohort = program.cohort(cohort_id)
    pair = cohort.pair(pair_id) if cohort else None
    return _pair_names(pair) if pair else _e(pair_id)


def _pair_names(pair: Pair) -> str:
    return f"<strong>{_e(pair.id)}</strong> {_e(pair.mentor.name)} &amp; {_e(pair.mentee.name)}"


def _row_step(r: Row) -> str:
    return parse(r.key).label


def _occ_step(o: Occurrence) -> str:
    return parse(o.key).label


def _now(flag: bool) -> str:
    return ' class="now"' if flag else ""


def _id(text: str) -> str:
    return "c-" + re.sub(r"[^A-Za-z0-9_-]", "-", text)


def _e(text: object) -> str:
    return escape(str(text), quote=True)
