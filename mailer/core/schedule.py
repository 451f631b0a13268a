"""The daemon's schedule: a crontab expression read the way cron reads it, as an APScheduler trigger."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from mailer.errors import ConfigError

_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _cron_dow(field: str) -> str:
    """Crontab numbers weekdays from Sunday = 0 (or 7); APScheduler 3.x from Monday = 0 (its issue
    286). Numbers become names, which both read the same way."""
    return re.sub(r"\d+", lambda m: _DOW_NAMES[int(m.group())] if int(m.group()) <= 7 else m.group(), field)


def cron_trigger(expr: str, timezone: ZoneInfo) -> Any:
    """`m h dom mon dow` (cron's five fields) or `s m h dom mon dow` (six, for tests and fine schedules)."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ConfigError(f"MENTOR_MAILER_SCHEDULE '{expr}': expected five crontab fields "
                          "(minute hour day month weekday), e.g. '0 9 * * *'")
    second = fields[0] if len(fields) == 6 else "0"
    minute, hour, day, month, dow = fields[-5:]
    try:
        return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month,
                           day_of_week=_cron_dow(dow), timezone=timezone)
    except ValueError as exc:
        raise ConfigError(f"MENTOR_MAILER_SCHEDULE '{expr}': {exc}") from None
