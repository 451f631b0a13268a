"""MENTOR_MAILER_SCHEDULE read as cron reads it (cronie's entry.c and crontab(5)), as APScheduler fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.core.schedule import crontab_fields
from mailer.errors import ConfigError

ALL = "*"


@pytest.mark.parametrize(("dow", "days"), [
    ("*", ALL),
    ("*/2", "sun,tue,thu,sat"),  # `*` is 0-7 in cron: 0, 2, 4, 6
    ("*/3", "sun,wed,sat"),
    ("0-6", ALL),
    ("1-7", ALL),
    ("1-5", "mon,tue,wed,thu,fri"),
    ("1-5/2", "mon,wed,fri"),  # steps through the range, not "from 1, every 5/2"
    ("1-7/2", "sun,mon,wed,fri"),  # 7 is Sunday
    ("0", "sun"),
    ("7", "sun"),
    ("0,7", "sun"),
    ("1", "mon"),  # APScheduler alone would read 1 as Tuesday
    ("6", "sat"),
    ("1,3,5", "mon,wed,fri"),
    ("5,1,3", "mon,wed,fri"),
    ("mon", "mon"),
    ("SUN", "sun"),
    ("Sat", "sat"),
    ("mon-fri", "mon,tue,wed,thu,fri"),
    ("sun-sat", ALL),
    ("mon-fri/2", "mon,wed,fri"),
    ("mon,wed-fri", "mon,wed,thu,fri"),
    ("0,mon-wed,6", "sun,mon,tue,wed,sat"),
    ("1-2,4-5", "mon,tue,thu,fri"),
    ("*/9", "sun"),  # cron accepts a step longer than the field: only the first value
])
def test_day_of_week_as_cron_reads_it(dow: str, days: str) -> None:
    (fields,) = crontab_fields(f"0 9 * * {dow}")
    assert fields["day_of_week"] == days
    assert not any(c.isdigit() for c in fields["day_of_week"])  # never a number: APScheduler counts from Monday


@pytest.mark.parametrize(("dow", "why"), [
    ("8", "0-7"),
    ("-1", "0-7"),
    ("x", "sun-sat"),
    ("monday", "sun-sat"),  # cron takes three letters only
    ("5-1", "a range runs upwards"),  # cronie: num1 > num2 is an error, not a wrap-around
    ("fri-sun", "a range runs upwards"),  # sun is 0 when it starts or ends a range
    ("1/2", "a step follows '*' or a range"),
    ("*/0", "a step is at least 1"),
    ("1-", "0-7"),
    ("1,,2", "0-7"),
    ("*-5", "0-7"),
    ("mon-fri/x", "0-7"),
])
def test_bad_day_of_week_is_a_config_error_saying_what_is_expected(dow: str, why: str) -> None:
    with pytest.raises(ConfigError, match="MENTOR_MAILER_SCHEDULE") as caught:
        crontab_fields(f"0 9 * * {dow}")
    assert f"the day of week field '{dow}' is not valid" in str(caught.value)
    assert why in str(caught.value)


@pytest.mark.parametrize(("expr", "field", "value"), [
    ("0 9 * * *", "hour", "9"),
    ("0 9 * * *", "second", "0"),  # five fields: on the minute
    ("30 0 9 * * *", "second", "30"),  # six: a leading seconds field
    ("*/15 * * * *", "minute", "0,15,30,45"),
    ("0 8-18/5 * * *", "hour", "8,13,18"),
    ("0 9 */10 * *", "day", "1,11,21,31"),  # `*` is 1-31 in the day field
    ("0 9 1 jan,JUL *", "month", "1,7"),
    ("0 9 1 */3 *", "month", "1,4,7,10"),
    ("@daily", "hour", "0"),
    ("@weekly", "day_of_week", "sun"),
])
def test_other_fields_become_explicit_lists(expr: str, field: str, value: str) -> None:
    (fields,) = crontab_fields(expr)
    assert fields[field] == value


@pytest.mark.parametrize(("expr", "label"), [
    ("0 25 * * *", "hour"), ("60 9 * * *", "minute"), ("0 9 0 * *", "day of month"), ("0 9 * 13 *", "month"),
    ("0 9 * mon *", "month"), ("0 9 mon * *", "day of month"), ("0 9 5/2 * *", "day of month"),
    ("61 0 9 * * *", "second"),
])
def test_bad_values_in_other_fields_name_the_field(expr: str, label: str) -> None:
    with pytest.raises(ConfigError) as caught:
        crontab_fields(expr)
    assert str(caught.value).startswith(f"MENTOR_MAILER_SCHEDULE '{expr}': the {label} field")


@pytest.mark.parametrize("expr", ["0 9 * *", "0 9 * * * * *", "", "every day", "@reboot"])
def test_wrong_number_of_fields_says_what_is_expected(expr: str) -> None:
    with pytest.raises(ConfigError, match=r"expected five crontab fields \(minute hour day month weekday\)"):
        crontab_fields(expr)


def test_both_day_fields_restricted_means_either_day() -> None:
    """crontab(5): '30 4 1,15 * 5' runs on the 1st and 15th of each month, plus every Friday."""
    either = crontab_fields("30 4 1,15 * 5")
    assert [(f["day"], f["day_of_week"]) for f in either] == [("1,15", "*"), ("*", "fri")]
    assert all(f["hour"] == "4" and f["minute"] == "30" for f in either)


@pytest.mark.parametrize("expr", ["0 9 */2 * 1", "0 9 1 * */2"])
def test_a_day_field_starting_with_a_star_means_both(expr: str) -> None:
    """Cron's own test is the field's first character: `*/2` counts as unrestricted, so both must match."""
    assert len(crontab_fields(expr)) == 1


def test_the_schedule_module_is_pure() -> None:
    """core/ may not import APScheduler: the daemon builds the trigger (mailer.daemon.cron_trigger)."""
    import ast

    import mailer.core.schedule as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "re", "mailer.errors"}, imported
