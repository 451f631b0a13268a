"""Field parsers for the program's files: text, names, addresses, dates and time zones, and the collector
that gathers every problem of one file."""

from __future__ import annotations

import contextlib
import difflib
import functools
import re
import unicodedata
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from mailer.errors import Problem

# \Z, not $: "$" also matches before a final newline, and "welcome\n" must not pass for a key
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
STEP_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")
MAX_NAME = 200
# Dates outside these years are typing mistakes (0219 for 2019); inside them every date sum mentor-mailer
# makes (a step 400 days out, a send time in any zone, in UTC) stays a valid date.
MIN_YEAR, MAX_YEAR = 1900, 2999
# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators: none belongs in a
# name or subject, and CR/LF in one could add a mail header.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass
class Collector:
    """Gathers every problem of one file so the coordinator sees them all at once."""

    file: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def add(self, field_: str | None, message: str, *, line: int | None = None, row: int | None = None) -> None:
        self.problems.append(Problem(self.file, line, field_, message, row))

    def unknown_keys(self, table: dict[str, Any], known: frozenset[str], where: str = "") -> None:
        for key in table:
            if key not in known:
                expected = ", ".join(sorted(known))
                self.warnings.append(Problem(self.file, None, f"{where}{key}",
                                             f"is not a known key and is ignored; expected one of: {expected}"))


def kind(value: Any) -> str:
    """What a TOML value is, in the coordinator's words (the value itself may be long)."""
    if isinstance(value, list):
        return "an array" if not value or not all(isinstance(v, dict) for v in value) else "tables"
    if isinstance(value, dict):
        return "a table"
    return repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."


def short(value: str, limit: int = 60) -> str:
    """A cell as the message quotes it: repr, so a stray control character shows; cut when long."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def clean_name(value: str, name: str, bad: Callable[[str | None, str], None]) -> str | None:
    if not value:
        bad(name, "is empty")
        return None
    if CONTROL_RE.search(value):
        bad(name, f"contains a line break or control character: {short(value)}")
        return None
    value = unicodedata.normalize("NFC", value)
    if len(value) > MAX_NAME:
        bad(name, f"is {len(value)} characters long; at most {MAX_NAME} are allowed")
        return None
    return value


def clean_text(value: str, col: Collector, name: str) -> str:
    if CONTROL_RE.search(value.replace("\n", " ")):
        col.add(name, f"contains a control character: {short(value)}")
    return unicodedata.normalize("NFC", " ".join(value.split()))


def email_address(value: Any, name: str, col: Collector) -> tuple[str, str] | None:
    """(normalised address, address for the wire) or None after reporting why not."""
    if not isinstance(value, str) or not value.strip():
        col.add(name, "is empty: expected an email address")
        return None
    value = value.strip()
    if CONTROL_RE.search(value):
        col.add(name, f"contains a line break or control character: {short(value)}")
        return None
    fast = _plain_address(value)
    if fast is not None:
        return fast
    try:
        info = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        col.add(name, f"{short(value)} is not a valid address: {exc}")
        return None
    return info.normalized, info.ascii_email or info.normalized


# RFC 5322 dot-atom, ASCII: a local part email-validator takes as it is


# RFC 5322 dot-atom, ASCII: a local part email-validator takes as it is
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")


def _plain_address(value: str) -> tuple[str, str] | None:
    """The common address, an ASCII dot-atom local part at a domain email-validator has already
    accepted in this process, without running its whole check again: a roster of thousands of pairs
    at a handful of domains loads in a fraction of the time. Anything else goes the full way."""
    local, at, domain = value.rpartition("@")
    if not at or not local or len(local) > 64 or len(value) > 254 or not _DOT_ATOM.match(local):
        return None
    checked = _checked_domain(domain)
    if checked is None:
        return None
    normalized, ascii_domain = checked
    return f"{local}@{normalized}", f"{local}@{ascii_domain}"


@functools.lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> tuple[str, str] | None:
    try:
        info = validate_email(f"a@{domain}", check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return None
    return info.domain, info.ascii_domain


def req_str(doc: dict[str, Any], key: str, col: Collector, *, prefix: str = "") -> str | None:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        col.add(prefix + key, "is missing: expected text" if value is None or isinstance(value, str)
                else f"expected text, got {kind(value)}")
        return None
    return clean_text(value, col, prefix + key)


def req_date(doc: dict[str, Any], key: str, col: Collector, *, prefix: str = "") -> date | None:
    value = doc.get(key)
    if value is None:
        col.add(prefix + key, "is missing: expected a date such as 2020-01-24")
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = date.fromisoformat(value.strip())
    if not isinstance(value, date) or hasattr(value, "hour"):
        col.add(prefix + key, f"expected a date such as 2020-01-24, got {kind(value)}")
        return None
    try:
        return plausible(value)
    except ValueError as exc:
        col.add(prefix + key, str(exc))
        return None


def plausible(day: date) -> date:
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise ValueError(f"year {day.year} is not plausible: expected a year from {MIN_YEAR} to {MAX_YEAR}")
    return day


@functools.cache
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def lookup_zone(value: str) -> tuple[ZoneInfo | None, str]:
    """The zone, or None and a hint ("; did you mean 'America/Toronto'?") for a name off by case or typing."""
    try:
        return ZoneInfo(value), ""
    except (ZoneInfoNotFoundError, ValueError, OSError):  # a folder such as "America", a name too long
        pass
    wanted = value.strip().lower().replace(" ", "_")
    near = _zone_names().get(wanted)
    if near is None:
        close = difflib.get_close_matches(wanted, list(_zone_names()), n=1, cutoff=0.8)
        near = _zone_names()[close[0]] if close else None
    return None, f"; did you mean '{near}'?" if near else ""


# Zones that are a fixed offset or an old alias: "EST" never moves to daylight time, so summer mail would go
# an hour late; the city zone to write instead.
LEGACY_ZONES = {
    "est": "America/New_York", "edt": "America/New_York", "est5edt": "America/New_York",
    "cst6cdt": "America/Chicago", "mst": "America/Denver (or America/Phoenix, which keeps no daylight time)",
    "mst7mdt": "America/Denver", "pst8pdt": "America/Los_Angeles", "hst": "Pacific/Honolulu",
    "cet": "Europe/Paris", "eet": "Europe/Athens", "met": "Europe/Paris", "wet": "Europe/Lisbon",
}


def legacy_zone(zone: ZoneInfo) -> str | None:
    """What to say about a fixed-offset or legacy zone name, or None for a city zone."""
    key = zone.key
    city = LEGACY_ZONES.get(key.lower())
    if city is None and key.startswith("Etc/") and key not in ("Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu"):
        city = "the city zone of the place, such as America/New_York or Europe/Berlin"
    if city is None and "/" in key and key.split("/")[0] in ("US", "Canada", "Mexico", "Brazil", "Chile"):
        city = "the city zone it stands for, such as America/New_York for US/Eastern"
    if city is None:
        return None
    return (f"'{key}' is a fixed offset or a legacy name, which may not follow daylight saving time; "
            f"write {city}")


def zone(value: Any, name: str, col: Collector) -> ZoneInfo | None:
    if not isinstance(value, str) or not value:
        col.add(name, "is missing: expected an IANA time zone such as America/New_York" if value is None
                else f"expected an IANA time zone such as America/New_York, got {kind(value)}")
        return None
    zone, hint = lookup_zone(value)
    if zone is None:
        col.add(name, f"{short(value)} is not an IANA time zone such as America/New_York{hint}")
    elif (legacy := legacy_zone(zone)) is not None:
        col.warnings.append(Problem(col.file, None, name, legacy))
    return zone
