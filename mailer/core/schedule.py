"""The daemon's schedule: a crontab expression read the way cron reads it, as APScheduler field strings.

Pure: this module only parses. `mailer.daemon.cron_trigger` turns the fields into an APScheduler trigger.

The grammar and its corner cases follow cronie's `src/entry.c` and crontab(5) (Vixie cron's parser):
a field is a list of `*`, `N` or `N-M`, the last two kinds optionally followed by `/STEP` after a `*` or
a range only; a range needs N <= M; a step is at least 1; the day of week runs 0-7, where 0 and 7 are
both Sunday, and takes the three-letter names `sun`-`sat` (any case) wherever it takes a number;
the month takes `jan`-`dec`. When both day fields are restricted (neither starts with `*`), cron runs
on the days that match *either*; otherwise on the days that match both.
"""

from __future__ import annotations

import re

from mailer.errors import ConfigError

SETTING = "MENTOR_MAILER_SCHEDULE"
# APScheduler 3.x numbers weekdays from Monday = 0 (its issue 286), cron from Sunday = 0: the day of
# week is therefore always handed over as names, never as numbers.
DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_NICKNAMES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
              "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
# field: (lowest, highest, names, what a person should be told the field takes)
_FIELDS: dict[str, tuple[int, int, tuple[str, ...], str]] = {
    "second": (0, 59, (), "0-59"),
    "minute": (0, 59, (), "0-59"),
    "hour": (0, 23, (), "0-23"),
    "day": (1, 31, (), "1-31"),
    "month": (1, 12, _MONTH_NAMES, "1-12 or jan-dec"),
    "day_of_week": (0, 7, DOW_NAMES, "0-7 (0 and 7 are Sunday) or sun-sat"),
}
_RANGE = re.compile(r"(?P<first>\*|[0-9]+|[a-z]+)(?:-(?P<last>[0-9]+|[a-z]+))?(?:/(?P<step>[0-9]+))?")
_EXPECTED = ("five crontab fields (minute hour day month weekday), or six with a leading seconds field, "
             "e.g. '0 9 * * *' or '0 9 * * mon-fri'")

Fields = dict[str, str]


def crontab_fields(expr: str) -> tuple[Fields, ...]:
    """`m h dom mon dow` (cron's five fields) or `s m h dom mon dow`, as APScheduler CronTrigger arguments.

    One set of fields, or two when cron's either-day rule applies (both day fields restricted): the
    schedule then fires whenever either set does. Every value is an explicit list, weekdays by name.
    """
    text = _NICKNAMES.get(expr.strip().lower(), expr)
    parts = text.split()
    if len(parts) not in (5, 6):
        raise ConfigError(f"{SETTING} '{expr}': expected {_EXPECTED}")
    if len(parts) == 5:
        parts = ["0", *parts]
    fields = {name: _field(expr, name, part) for name, part in zip(_FIELDS, parts, strict=True)}
    dom_star, dow_star = parts[3].startswith("*"), parts[5].startswith("*")
    if dom_star or dow_star:
        return (fields,)
    return (fields | {"day_of_week": "*"}, fields | {"day": "*"})


def _field(expr: str, name: str, text: str) -> str:
    low, high, names, allowed = _FIELDS[name]
    values: set[int] = set()
    for item in text.lower().split(","):
        match = _RANGE.fullmatch(item)
        if match is None:
            raise _bad(expr, name, text, allowed)
        first, last, step = match["first"], match["last"], match["step"]
        if first == "*":
            if last is not None:
                raise _bad(expr, name, text, allowed)
            start, stop = low, high
        else:
            start = _number(expr, name, text, first, low, high, names, allowed)
            stop = start if last is None else _number(expr, name, text, last, low, high, names, allowed)
            if last is None and step is not None:
                raise _bad(expr, name, text, allowed, f"a step follows '*' or a range, as in {first}-{high}/{step}")
            if start > stop:
                raise _bad(expr, name, text, allowed, f"a range runs upwards: '{item}' is empty")
        stride = 1 if step is None else int(step)
        if stride < 1:
            raise _bad(expr, name, text, allowed, "a step is at least 1")
        values.update(range(start, stop + 1, stride))
    if name == "day_of_week":
        days = {v % 7 for v in values}  # 7 is Sunday too
        return "*" if len(days) == 7 else ",".join(DOW_NAMES[d] for d in sorted(days))
    if text == "*":
        return "*"
    return ",".join(str(v) for v in sorted(values))


def _number(expr: str, name: str, text: str, token: str, low: int, high: int, names: tuple[str, ...],
            allowed: str) -> int:
    if token.isdigit():
        value = int(token)
    elif token in names:
        value = names.index(token) + low
    else:
        raise _bad(expr, name, text, allowed)
    if not low <= value <= high:
        raise _bad(expr, name, text, allowed)
    return value


def _bad(expr: str, name: str, text: str, allowed: str, rule: str = "") -> ConfigError:
    label = {"day": "day of month", "day_of_week": "day of week"}.get(name, name)
    extra = f"; {rule}" if rule else ""
    return ConfigError(f"{SETTING} '{expr}': the {label} field '{text}' is not valid: expected {allowed}, "
                       f"a range such as {_example(name)}, a step such as */2, or a list of these{extra}")


def _example(name: str) -> str:
    return {"day_of_week": "1-5 or mon-fri", "month": "1-6 or jan-jun"}.get(name, "1-5")
