"""Cron schedules and timezones for automations, checked before Prefect sees them.

Every automation is a Prefect deployment with one cron schedule in an IANA
timezone. We validate here, before anything reaches Prefect, because Prefect
3.9.1 accepts strings that are not five-field cron: `*/30 * * * * *` is read
with a seconds field, Quartz syntax such as `30 10 ? * 6#1 *` passes, and
`0 0 30 2 *` is stored although it never fires. Its timezone check also lets an
empty string through. A person should hear about such mistakes when they save
the automation, in words that say what to change, instead of getting a
deployment that runs at surprising times or never.

We do not work out fire times ourselves. Daylight saving time is resolved the
way Prefect's scheduler resolves it, so previews come from the server-side
`CronSchedule` model the scheduler itself uses: a wall time inside a
spring-forward gap runs shifted by the gap, and a wall time that repeats when
the clocks fall back runs once, at its first occurrence. Plain croniter would
answer differently on both days.
"""

from __future__ import annotations

import calendar
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from typing import Any, Final, Literal

from cron_descriptor import (
    ExpressionDescriptor,
    FormatException,
    MissingFieldException,
    Options,
    WrongArgumentException,
)
from croniter import CroniterError, croniter
from prefect.server.schemas.schedules import CronSchedule
from pydantic import ValidationError

ScheduleField = Literal["schedule", "timezone"]

MAX_FIRE_TIMES: Final = 1000

MACROS: Final[Mapping[str, str]] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELD_NAMES: Final = "minute hour day-of-month month day-of-week"

# Spelled out rather than taken from `calendar`, whose names follow the locale.
_MONTH_NAMES: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_MONTHS: Final = {
    name[:3].upper(): number for number, name in enumerate(_MONTH_NAMES, start=1)
}

_WEEKDAYS: Final = {
    "SUN": 0,
    "MON": 1,
    "TUE": 2,
    "WED": 3,
    "THU": 4,
    "FRI": 5,
    "SAT": 6,
}

# One list item of a field: `*`, a value, or a range, each with an optional step.
_ITEM: Final = re.compile(
    r"(?:\*|(?P<start>[0-9]+|[A-Z]+)(?:-(?P<end>[0-9]+|[A-Z]+))?)"
    r"(?:/(?P<step>[0-9]+))?",
    re.ASCII | re.IGNORECASE,
)

# These files sit among the zone files but mirror the host's own clock setting,
# so a schedule in them would change meaning from one machine to the next.
_HOST_ZONE_ALIASES: Final = frozenset({"localtime", "posixrules"})

# Never-firing expressions are found by asking for one date from a fixed point;
# croniter gives up with an error when no date exists at all.
_PROBE_START: Final = datetime(2024, 1, 1, tzinfo=UTC)

# February counts 29 days: `0 0 29 2 *` is valid because it fires in leap years.
_LONGEST_MONTH: Final = {
    month: calendar.monthrange(2024, month)[1] for month in range(1, 13)
}


class ScheduleError(ValueError):
    """Raised with a message a person can act on.

    `field` is 'schedule' or 'timezone'; `detail` is the message without it.
    """

    field: ScheduleField
    detail: str

    def __init__(self, detail: str, *, field: ScheduleField) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # The keyword-only `field` would otherwise be lost when unpickling.
        return partial(ScheduleError, field=self.field), (self.detail,)


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: Mapping[str, int]
    name_hint: str


_CRON_FIELDS: Final = (
    _CronField("minute", 0, 59, {}, ""),
    _CronField("hour", 0, 23, {}, ""),
    _CronField("day-of-month", 1, 31, {}, ""),
    _CronField("month", 1, 12, _MONTHS, "JAN-DEC"),
    _CronField("day-of-week", 0, 7, _WEEKDAYS, "SUN-SAT"),
)


def validate_cron(expression: str) -> str:
    """Return `expression` normalized, or raise ScheduleError(field="schedule").

    Accepts five fields (minute hour day-of-month month day-of-week) with lists,
    ranges, steps and month/day names, or one of the `MACROS`. Normalizing trims
    the ends, collapses inner runs of spaces and tabs, and lowercases a macro.
    """
    if not isinstance(expression, str):
        raise _cron_error(f"expected a string, got {type(expression).__name__}")

    stripped = expression.strip()
    if re.search(r"[\n\r\v\f]", stripped):
        raise _cron_error("must be a single line of 5 cron fields or a macro")

    normalized = " ".join(re.split(r"[ \t]+", stripped))
    if not normalized:
        raise _cron_error(
            f"is empty; expected 5 cron fields ({_FIELD_NAMES}) or a macro such as"
            " @daily"
        )

    if normalized.startswith("@"):
        return _validate_macro(normalized)

    _check_fields(normalized.split(" "))
    _check_croniter_reads(normalized)
    _check_fires(normalized)
    return normalized


def validate_timezone(name: str) -> str:
    """Return `name` if it is an IANA timezone name, else raise ScheduleError.

    Only membership in the cached set of known names is checked, so a path-like
    name such as `../etc/passwd` is rejected without touching the filesystem.
    """
    if not isinstance(name, str):
        raise _timezone_error(f"expected a string, got {type(name).__name__}")

    if name in _timezone_names():
        return name

    if not name.strip():
        raise _timezone_error("is empty; give an IANA name, e.g. 'America/New_York'")

    detail = f"{_quote(name)} is not an IANA timezone name, e.g. 'America/New_York'"
    suggestion = _timezones_by_casefold().get(name.strip().casefold())
    if suggestion is not None:
        detail += f"; did you mean {suggestion!r}?"
    raise _timezone_error(detail)


def next_fire_times(
    cron: str, timezone: str, *, after: datetime, count: int
) -> list[datetime]:
    """Return the next `count` fire times at or after `after`, in UTC, ascending.

    A fire time equal to `after` is included: it is due now. The dates are the
    ones Prefect's scheduler computes. Prefect checks at most 1,000 candidate
    wall times per call and drops candidates that resolve to an instant it has
    already produced (wall times in a spring-forward gap), so one call can come
    back short; we then continue from just after the last date, as the
    scheduler does on its next pass, until `count` dates are found.
    """
    expression = validate_cron(cron)
    zone = validate_timezone(timezone)
    _check_window(after, count)

    schedule = _prefect_schedule(expression, zone)
    fire_times: list[datetime] = []
    start = after
    while len(fire_times) < count:
        wanted = count - len(fire_times)
        batch = sorted(schedule._get_dates_generator(n=wanted, start=start))
        if not batch:
            break

        fire_times.extend(_as_utc(date) for date in batch)
        start = fire_times[-1] + timedelta(microseconds=1)

    return fire_times


_NEXT_KNOWN: dict[tuple[str, str], tuple[datetime, datetime]] = {}


def next_fire_time(cron: str, timezone: str, *, after: datetime) -> datetime | None:
    """The first fire time at or after `after`, remembered until it has passed.

    A fire time found from an earlier moment is still the next one for any later
    moment before it, so listing many automations computes each schedule once.
    """
    known = _NEXT_KNOWN.get((cron, timezone))
    if known is not None and known[0] <= after <= known[1]:
        return known[1]

    found = _next_fire_time(cron, timezone, after=after)
    if found is not None:
        if len(_NEXT_KNOWN) > 50_000:
            _NEXT_KNOWN.clear()
        _NEXT_KNOWN[(cron, timezone)] = (after, found)
    return found


def _next_fire_time(cron: str, timezone: str, *, after: datetime) -> datetime | None:
    """Return the first fire time at or after `after` in UTC, or None if none."""
    fire_times = next_fire_times(cron, timezone, after=after, count=1)
    return fire_times[0] if fire_times else None


def describe_cron(expression: str) -> str:
    """Describe a valid schedule in plain English, e.g. "At 08:00, Monday through
    Friday"; raise ScheduleError if it is not valid."""
    normalized = validate_cron(expression)
    fields = MACROS.get(normalized, normalized)

    options = Options()
    options.use_24hour_time_format = True
    try:
        return ExpressionDescriptor(fields, options).get_description()
    except (FormatException, MissingFieldException, WrongArgumentException):
        # A description is a courtesy; a schedule we accept must never fail here.
        return f"On the cron schedule '{normalized}'"


def _validate_macro(normalized: str) -> str:
    macro = normalized.lower()
    if macro in MACROS:
        return macro

    if macro == "@reboot":
        raise _cron_error(
            "'@reboot' is not supported; automations run on a time-based schedule"
            " such as @daily"
        )

    if macro.startswith("@every"):
        raise _cron_error(
            f"{_quote(normalized)} is not supported; write an interval as a cron"
            " step, e.g. '*/15 * * * *' for every 15 minutes"
        )

    raise _cron_error(
        f"unknown macro {_quote(normalized)}; use one of {', '.join(MACROS)}"
        " or five cron fields"
    )


def _check_fields(fields: list[str]) -> None:
    if len(fields) != len(_CRON_FIELDS):
        detail = f"expected 5 cron fields ({_FIELD_NAMES}), got {len(fields)}"
        if len(fields) == 6:
            detail += "; seconds are not supported"
        elif len(fields) == 7:
            detail += "; seconds and years are not supported"
        raise _cron_error(detail)

    for text, field in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            _check_item(item, field)


def _check_item(item: str, field: _CronField) -> None:
    unsupported = _unsupported_syntax(item)
    if unsupported is not None:
        raise _cron_error(f"{_quote(item)} in {field.name}: {unsupported}")

    match = _ITEM.fullmatch(item)
    if match is None:
        raise _cron_error(
            f"cannot read {_quote(item)} in {field.name}; use numbers, '*', lists"
            " (1,15), ranges (9-17) and steps (*/15)"
        )

    for value in (match["start"], match["end"]):
        if value is not None:
            _check_value(value, field)

    step = match["step"]
    if step is not None and not 1 <= int(step) <= field.high - field.low:
        raise _cron_error(
            f"step {int(step)} in {field.name} is out of range"
            f" 1-{field.high - field.low}"
        )

    single = _single_value(match, field)
    if single is not None:
        raise _cron_error(
            f"{_quote(item)} in {field.name} names only {single}; write {single}"
            " (ranges and steps of one value are read as '*' by the scheduler)"
        )


def _number(value: str, field: _CronField) -> int:
    return int(value) if value.isdigit() else field.names[value.upper()]


def _single_value(match: re.Match[str], field: _CronField) -> int | None:
    """The one value a range or step names, when it names only one.

    croniter, and so Prefect's scheduler, reads such an item (`5-5`, `59/1`,
    `7-7` in day-of-week) as `*`: an hourly job would run every minute.
    """
    if match["start"] is None or (match["end"] is None and match["step"] is None):
        return None

    start = _number(match["start"], field)
    # Day-of-week 7 is Sunday again; a step from it reaches no other day.
    high = 6 if field.name == "day-of-week" and start <= 6 else field.high
    end = _number(match["end"], field) if match["end"] is not None else high
    step = int(match["step"]) if match["step"] is not None else 1

    if end < start:
        return None
    return start if start + step > end else None


def _unsupported_syntax(item: str) -> str | None:
    item = item.upper()
    if "?" in item:
        return "Quartz 'no specific value' ('?') is not supported; use '*'"
    if "#" in item:
        return "nth weekday of the month ('#') is not supported"
    if re.search(r"(?:^|[0-9])L(?:W|-|$)", item):
        return "last day of the month or week ('L') is not supported"
    if re.search(r"[0-9]W$", item):
        return "nearest weekday ('W') is not supported"
    if re.match(r"[HR](?:\(|/|$)", item):
        return "hashed and random values ('H', 'R') are not supported; pick a value"
    return None


def _check_value(value: str, field: _CronField) -> None:
    if not value.isdigit():
        if not field.names:
            raise _cron_error(
                f"{_quote(value)} in {field.name}: names are only allowed in month"
                " (JAN-DEC) and day-of-week (SUN-SAT)"
            )
        if value.upper() not in field.names:
            raise _cron_error(
                f"{_quote(value)} is not a {field.name} name; use"
                f" {field.name_hint} or {field.low}-{field.high}"
            )
        return

    if not field.low <= int(value) <= field.high:
        raise _cron_error(
            f"{field.name} value {int(value)} is out of range {field.low}-{field.high}"
        )


def _check_croniter_reads(expression: str) -> None:
    try:
        croniter(expression)
    except CroniterError as error:
        raise _cron_error(f"{_quote(expression)} is not valid cron ({error})") from None


def _check_fires(expression: str) -> None:
    schedule = _prefect_schedule(expression, "UTC")
    try:
        first = next(schedule._get_dates_generator(n=1, start=_PROBE_START), None)
    except ValueError:
        # croniter's "failed to find next date": no date ever matches.
        first = None

    if first is None:
        raise _cron_error(
            f"{_quote(expression)} never fires ({_never_fires_reason(expression)})"
        )


def _never_fires_reason(expression: str) -> str:
    _, _, days, months, weekdays = croniter(expression).expanded
    if days == ["*"]:
        return "no date matches it"

    month_numbers = list(_LONGEST_MONTH) if months == ["*"] else months
    missing = [
        day
        for day in days
        if all(day > _LONGEST_MONTH[month] for month in month_numbers)
    ]
    if not missing:
        return "no date matches it"

    noun = "day" if len(missing) == 1 else "days"
    verb = "does" if len(missing) == 1 else "do"
    month_names = [_MONTH_NAMES[month - 1] for month in month_numbers]
    reason = (
        f"{noun} {_join_words([str(day) for day in missing], 'and')} {verb} not"
        f" occur in {_join_words(month_names, 'or')}"
    )

    if weekdays != ["*"]:
        # Prefect's croniter gives up on such a day-of-month instead of falling
        # back to the day-of-week alone.
        reason += "; use '*' as the day-of-month to run on the weekdays alone"
    return reason


def _prefect_schedule(expression: str, zone: str) -> CronSchedule:
    try:
        return CronSchedule(cron=expression, timezone=zone)
    except ValidationError as error:
        messages = "; ".join(item["msg"] for item in error.errors())
        raise _cron_error(f"Prefect rejects {_quote(expression)}: {messages}") from None


def _check_window(after: datetime, count: int) -> None:
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after must be a timezone-aware datetime")

    if not 1 <= count <= MAX_FIRE_TIMES:
        raise ValueError(f"count must be between 1 and {MAX_FIRE_TIMES}, got {count}")


def _as_utc(date: datetime) -> datetime:
    # Prefect hands back its own datetime subclass in the schedule's zone.
    utc = date.astimezone(UTC)
    return datetime(
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
        tzinfo=UTC,
    )


def timezone_names() -> list[str]:
    """Every timezone name `validate_timezone` accepts, sorted."""
    return sorted(_timezone_names())


@cache
def _timezone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - _HOST_ZONE_ALIASES | {"UTC"})


@cache
def _timezones_by_casefold() -> Mapping[str, str]:
    return {name.casefold(): name for name in _timezone_names()}


def _join_words(words: list[str], conjunction: str) -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _quote(text: str) -> str:
    shown = text if len(text) <= 80 else f"{text[:77]}..."
    return repr(shown)


def _cron_error(detail: str) -> ScheduleError:
    return ScheduleError(detail, field="schedule")


def _timezone_error(detail: str) -> ScheduleError:
    return ScheduleError(detail, field="timezone")
