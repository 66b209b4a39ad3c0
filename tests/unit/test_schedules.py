"""Behaviour of api.schedules: cron and timezone validation, previews, wording."""

from __future__ import annotations

import builtins
import os
import pickle
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from prefect.server.schemas.schedules import CronSchedule

from api.schedules import (
    MACROS,
    ScheduleError,
    describe_cron,
    next_fire_time,
    next_fire_times,
    validate_cron,
    validate_timezone,
)

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
DEC_3_2026 = datetime(2026, 12, 3, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def fires_on_local_date(
    fire_times: list[datetime], zone: zoneinfo.ZoneInfo, day: str
) -> list[datetime]:
    return [
        when for when in fire_times if when.astimezone(zone).date().isoformat() == day
    ]


# --- accepted schedules ---------------------------------------------------------

ACCEPTED = [
    "0,15,30,45 * * * *",
    "0 9-17 * * *",
    "*/15 * * * *",
    "0-30/10 * * * *",
    "5/15 * * * *",
    "0 9-17/2 1,15 * *",
    "0 8 * JAN-MAR MON-FRI",
    "0 8 * jan,jul mon,wed",
    "0 8 * Feb Sun",
    "0 8 * * 1-5",
    "0 0 * * 7",
    "0 0 * * 0-7",
    "0 0 * * fri-mon",
    "0 22-2 * * *",
    "00 08 * * *",
    "0 0 29 2 *",
    "0 0 31 * *",
    "0 9 1 * 1",
    "0 0 30 1,2 1",
    "59 23 31 12 6",
]


@pytest.mark.parametrize("expression", ACCEPTED)
def test_five_field_forms_are_accepted_unchanged(expression: str) -> None:
    assert validate_cron(expression) == expression


@pytest.mark.parametrize("macro", sorted(MACROS))
def test_each_macro_is_accepted(macro: str) -> None:
    assert validate_cron(macro) == macro


def test_the_macros_are_exactly_the_contracted_ones() -> None:
    assert set(MACROS) == {
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    }


@pytest.mark.parametrize("expression", ACCEPTED + sorted(MACROS))
def test_everything_accepted_is_accepted_by_prefect_too(expression: str) -> None:
    CronSchedule(cron=validate_cron(expression), timezone="UTC")


# --- normalization --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  0 8 * * 1-5  ", "0 8 * * 1-5"),
        ("0  8\t* *   1-5", "0 8 * * 1-5"),
        ("\t0\t\t8 * * *\t", "0 8 * * *"),
        ("\n0 8 * * *\n", "0 8 * * *"),
        (" @hourly\t", "@hourly"),
        ("@DAILY", "@daily"),
        ("@Weekly", "@weekly"),
    ],
)
def test_whitespace_is_trimmed_and_collapsed(raw: str, normalized: str) -> None:
    assert validate_cron(raw) == normalized


# --- rejected schedules ---------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("*/30 * * * * *", "got 6; seconds are not supported"),
        ("0 0 12 * * ?", "got 6; seconds are not supported"),
        ("30 10 ? * 6#1 *", "got 6; seconds are not supported"),
        ("0 30 10 ? * 6#1 2027", "got 7; seconds and years are not supported"),
        ("* * * *", "got 4"),
        ("0", "got 1"),
        ("0 0 ? * *", "'?'"),
        ("0 0 * * ?", "'?'"),
        ("0 0 L * *", "'L'"),
        ("0 0 LW * *", "'L'"),
        ("0 0 L-2 * *", "'L'"),
        ("0 0 * * 5L", "'L'"),
        ("0 0 15W * *", "'W'"),
        ("0 0 * * 1#2", "'#'"),
        ("0 0 * * MON#1", "'#'"),
        ("H * * * *", "hashed"),
        ("H(0-29) * * * *", "hashed"),
        ("0 H/4 * * *", "hashed"),
        ("R * * * *", "random"),
    ],
)
def test_syntax_beyond_five_field_cron_is_rejected(
    expression: str, problem: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_cron(expression)

    assert caught.value.field == "schedule"
    assert problem in str(caught.value)


def test_too_many_fields_names_the_five_expected_fields() -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_cron("*/30 * * * * *")

    assert str(caught.value) == (
        "schedule: expected 5 cron fields (minute hour day-of-month month"
        " day-of-week), got 6; seconds are not supported"
    )


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("@reboot", "'@reboot' is not supported"),
        ("@every 5m", "'*/15 * * * *'"),
        ("@every", "is not supported"),
        ("@fortnightly", "unknown macro '@fortnightly'"),
        ("@", "unknown macro"),
        ("@daily 0", "unknown macro"),
    ],
)
def test_unsupported_macros_are_rejected(expression: str, problem: str) -> None:
    with pytest.raises(ScheduleError, match="^schedule: ") as caught:
        validate_cron(expression)

    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("61 * * * *", "minute value 61 is out of range 0-59"),
        ("60 * * * *", "minute value 60 is out of range 0-59"),
        ("0 24 * * *", "hour value 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month value 0 is out of range 1-31"),
        ("0 0 32 * *", "day-of-month value 32 is out of range 1-31"),
        ("0 0 * 0 *", "month value 0 is out of range 1-12"),
        ("0 0 * 13 *", "month value 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week value 8 is out of range 0-7"),
        ("0-61 * * * *", "minute value 61"),
        ("*/0 * * * *", "step 0 in minute"),
        ("*/90 * * * *", "step 90 in minute"),
        ("0 0 * jan-foo *", "'foo' is not a month name"),
        ("0 0 * * monday", "'monday' is not a day-of-week name"),
        ("0 jan * * *", "names are only allowed in month"),
        ("1-5-7 * * * *", "cannot read '1-5-7' in minute"),
        ("*-5 * * * *", "cannot read"),
        (",5 * * * *", "cannot read"),
        ("0 0 * * 1,", "cannot read"),
        ("%0 * * * *", "cannot read"),
        ("\u0663 * * * *", "cannot read"),
    ],
)
def test_values_out_of_range_or_unreadable_are_rejected(
    expression: str, problem: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_cron(expression)

    assert problem in str(caught.value)


@pytest.mark.parametrize("expression", ["", "   ", "\t \t"])
def test_empty_schedule_is_rejected(expression: str) -> None:
    with pytest.raises(ScheduleError, match="^schedule: is empty"):
        validate_cron(expression)


def test_schedule_split_over_lines_is_rejected() -> None:
    with pytest.raises(ScheduleError, match="single line"):
        validate_cron("0 0\n* * *")


@pytest.mark.parametrize("value", [None, 5, b"0 0 * * *"])
def test_schedule_that_is_not_a_string_is_rejected(value: object) -> None:
    with pytest.raises(ScheduleError, match="expected a string"):
        validate_cron(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 0 30 2 *", "(day 30 does not occur in February)"),
        ("0 0 31 2 *", "(day 31 does not occur in February)"),
        ("0 0 30,31 feb *", "(days 30 and 31 do not occur in February)"),
        (
            "0 0 31 4,6,9,11 *",
            "(day 31 does not occur in April, June, September or November)",
        ),
        ("0 0 31 2,4 *", "(day 31 does not occur in February or April)"),
    ],
)
def test_dates_that_never_occur_are_rejected(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_cron(expression)

    assert str(caught.value) == f"schedule: {expression!r} never fires {reason}"


def test_impossible_day_of_month_with_a_weekday_is_rejected() -> None:
    # POSIX would run on February's Mondays; Prefect's croniter finds no date.
    with pytest.raises(ScheduleError) as caught:
        validate_cron("0 0 30 2 1")

    assert "day 30 does not occur in February" in str(caught.value)
    assert "use '*' as the day-of-month" in str(caught.value)


@pytest.mark.parametrize(
    "expression", ["*/30 * * * * *", "30 10 ? * 6#1 *", "0 0 30 2 *"]
)
def test_prefect_alone_accepts_what_we_reject(expression: str) -> None:
    CronSchedule(cron=expression, timezone="UTC")

    with pytest.raises(ScheduleError):
        validate_cron(expression)


def test_schedule_error_is_a_value_error_that_survives_pickling() -> None:
    error = ScheduleError("is empty", field="timezone")

    copy: ScheduleError = pickle.loads(pickle.dumps(error))

    assert isinstance(copy, ValueError)
    assert (copy.field, copy.detail, str(copy)) == (
        "timezone",
        "is empty",
        "timezone: is empty",
    )


# --- timezones ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "America/New_York",
        "America/Los_Angeles",
        "Europe/London",
        "Australia/Sydney",
        "Asia/Kolkata",
        "Etc/GMT+5",
        "UTC",
    ],
)
def test_iana_timezone_names_are_accepted(name: str) -> None:
    assert validate_timezone(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus",
        "America/Gotham",
        "+05:00",
        "GMT+5:30",
        "UTC\x00",
        "localtime",
        "posixrules",
    ],
)
def test_unknown_timezone_names_are_rejected(name: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_timezone(name)

    assert caught.value.field == "timezone"
    assert "is not an IANA timezone name, e.g. 'America/New_York'" in str(caught.value)


def test_unknown_timezone_message_names_the_problem() -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_timezone("Mars/Olympus")

    assert str(caught.value) == (
        "timezone: 'Mars/Olympus' is not an IANA timezone name, e.g. 'America/New_York'"
    )


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("america/new_york", "America/New_York"),
        ("utc", "UTC"),
        (" Europe/London ", "Europe/London"),
    ],
)
def test_near_miss_timezone_is_rejected_with_a_suggestion(
    name: str, suggestion: str
) -> None:
    with pytest.raises(ScheduleError, match=f"did you mean '{suggestion}'"):
        validate_timezone(name)


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_timezone_is_rejected(name: str) -> None:
    with pytest.raises(ScheduleError, match="^timezone: is empty"):
        validate_timezone(name)


@pytest.mark.parametrize("value", [None, 0, zoneinfo.ZoneInfo("UTC")])
def test_timezone_that_is_not_a_string_is_rejected(value: object) -> None:
    with pytest.raises(ScheduleError, match="^timezone: expected a string"):
        validate_timezone(value)  # type: ignore[arg-type]


PATH_LIKE_NAMES = [
    "../etc/passwd",
    "../../../../etc/passwd",
    "/etc/localtime",
    "/usr/share/zoneinfo/UTC",
    "America/../UTC",
    "America/New_York/",
    "./UTC",
    "C:\\Windows\\zoneinfo",
]


def test_path_like_timezones_are_rejected_without_touching_the_filesystem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    validate_timezone("UTC")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the filesystem was touched")

    monkeypatch.setattr(builtins, "open", forbidden)
    monkeypatch.setattr(os, "open", forbidden)
    monkeypatch.setattr(os, "stat", forbidden)
    monkeypatch.setattr(zoneinfo, "ZoneInfo", forbidden)

    for name in PATH_LIKE_NAMES:
        with pytest.raises(ScheduleError, match="^timezone: "):
            validate_timezone(name)


# --- fire times: daylight saving ------------------------------------------------


def test_spring_forward_gap_fires_once_shifted_by_the_gap() -> None:
    fire_times = next_fire_times(
        "30 2 * * *", "America/New_York", after=DEC_3_2026, count=200
    )

    assert fires_on_local_date(fire_times, NEW_YORK, "2027-03-14") == [
        utc(2027, 3, 14, 7, 30)
    ]
    assert utc(2027, 3, 13, 7, 30) in fire_times
    assert utc(2027, 3, 15, 6, 30) in fire_times


def test_fall_back_repeated_time_fires_once_at_its_first_occurrence() -> None:
    fire_times = next_fire_times(
        "30 1 * * *", "America/New_York", after=DEC_3_2026, count=400
    )

    assert fires_on_local_date(fire_times, NEW_YORK, "2027-11-07") == [
        utc(2027, 11, 7, 5, 30)
    ]
    assert utc(2027, 11, 6, 5, 30) in fire_times
    assert utc(2027, 11, 8, 6, 30) in fire_times


def test_fire_times_in_a_zone_follow_local_wall_time() -> None:
    fire_times = next_fire_times(
        "0 9 * * *", "Europe/London", after=utc(2027, 3, 27), count=2
    )

    assert fire_times == [utc(2027, 3, 27, 9), utc(2027, 3, 28, 8)]


DST_CASES = [
    ("30 2 * * *", "America/New_York", utc(2027, 3, 12), 5),
    ("30 1 * * *", "America/New_York", utc(2027, 11, 5), 5),
    ("*/20 1-3 * * *", "America/New_York", utc(2027, 11, 7, 4), 12),
    ("*/20 1-3 * * *", "America/Los_Angeles", utc(2027, 3, 14, 8), 12),
    ("@hourly", "America/Los_Angeles", utc(2027, 11, 7, 7), 6),
    ("0 * * * *", "Europe/London", utc(2027, 3, 28), 6),
    ("30 1 * * *", "Europe/London", utc(2027, 10, 30), 4),
    ("15 1 * * 0", "Europe/London", utc(2027, 10, 1), 3),
    ("30 2 * * *", "Australia/Sydney", utc(2027, 10, 1), 4),
    ("30 2 * * *", "Australia/Sydney", utc(2027, 4, 2), 4),
    ("*/30 2 * * *", "Australia/Sydney", utc(2027, 4, 3, 14), 6),
    ("0 9 * * 1-5", "America/New_York", DEC_3_2026, 50),
]


@pytest.mark.parametrize(("cron", "zone", "start", "count"), DST_CASES)
async def test_fire_times_equal_prefects_own_get_dates(
    cron: str, zone: str, start: datetime, count: int
) -> None:
    expected = await CronSchedule(cron=cron, timezone=zone).get_dates(
        n=count, start=start
    )

    # Compared as UTC instants: under PEP 495 a wall time inside a fall-back fold
    # never equals a datetime in another zone, even at the same instant.
    assert next_fire_times(cron, zone, after=start, count=count) == [
        date.astimezone(UTC) for date in expected
    ]


def test_a_long_preview_across_a_gap_is_topped_up_to_the_count_asked() -> None:
    after = utc(2027, 3, 14, 5)
    prefect_once = sorted(
        CronSchedule(
            cron="* * * * *", timezone="America/New_York"
        )._get_dates_generator(n=1000, start=after)
    )

    fire_times = next_fire_times(
        "* * * * *", "America/New_York", after=after, count=1000
    )

    assert len(prefect_once) < 1000
    assert fire_times[: len(prefect_once)] == [d.astimezone(UTC) for d in prefect_once]
    assert len(fire_times) == 1000
    assert all(
        a + timedelta(minutes=1) == b
        for a, b in zip(fire_times, fire_times[1:], strict=False)
    )


# --- fire times: shape and edges ------------------------------------------------


def test_day_of_month_or_day_of_week_fires_on_either() -> None:
    fire_times = next_fire_times("0 9 1 * 1", "UTC", after=utc(2027, 1, 1), count=7)

    assert fire_times == [
        utc(2027, 1, 1, 9),
        utc(2027, 1, 4, 9),
        utc(2027, 1, 11, 9),
        utc(2027, 1, 18, 9),
        utc(2027, 1, 25, 9),
        utc(2027, 2, 1, 9),
        utc(2027, 2, 8, 9),
    ]


def test_february_29th_fires_in_leap_years_only() -> None:
    fire_times = next_fire_times("0 0 29 2 *", "UTC", after=DEC_3_2026, count=2)

    assert fire_times == [utc(2028, 2, 29), utc(2032, 2, 29)]


def test_fire_times_are_plain_utc_datetimes_in_ascending_order() -> None:
    fire_times = next_fire_times(
        "*/7 * * * *", "Asia/Kolkata", after=DEC_3_2026, count=30
    )

    assert len(fire_times) == 30
    assert fire_times == sorted(set(fire_times))
    assert all(type(when) is datetime and when.tzinfo is UTC for when in fire_times)


def test_a_fire_time_equal_to_after_is_due_now() -> None:
    assert next_fire_time("0 9 * * *", "UTC", after=utc(2027, 1, 1, 9)) == utc(
        2027, 1, 1, 9
    )


def test_the_next_fire_time_is_strictly_later_once_after_has_passed() -> None:
    after = utc(2027, 1, 1, 9) + timedelta(microseconds=1)

    assert next_fire_time("0 9 * * *", "UTC", after=after) == utc(2027, 1, 2, 9)


def test_after_in_any_zone_means_the_same_instant() -> None:
    in_new_york = datetime(2027, 1, 1, 4, tzinfo=NEW_YORK)

    assert next_fire_time("0 9 * * *", "UTC", after=in_new_york) == utc(2027, 1, 1, 9)


def test_next_fire_time_is_the_first_of_the_fire_times() -> None:
    fire_times = next_fire_times("@weekly", "Europe/London", after=DEC_3_2026, count=3)

    assert (
        next_fire_time("@weekly", "Europe/London", after=DEC_3_2026) == (fire_times[0])
    )
    assert fire_times[0] == utc(2026, 12, 6)


def test_fire_times_normalize_the_schedule_first() -> None:
    assert next_fire_time("  @DAILY ", "UTC", after=DEC_3_2026) == utc(2026, 12, 3)


def test_naive_after_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware") as caught:
        next_fire_times("@daily", "UTC", after=datetime(2027, 1, 1), count=1)

    assert not isinstance(caught.value, ScheduleError)


@pytest.mark.parametrize("count", [0, -1, 1001])
def test_count_outside_one_to_a_thousand_is_rejected(count: int) -> None:
    with pytest.raises(ValueError, match="count must be between 1 and 1000"):
        next_fire_times("@daily", "UTC", after=DEC_3_2026, count=count)


def test_a_thousand_fire_times_can_be_asked_for() -> None:
    fire_times = next_fire_times("@hourly", "UTC", after=DEC_3_2026, count=1000)

    assert len(fire_times) == 1000
    assert fire_times[-1] == DEC_3_2026 + timedelta(hours=999)


def test_fire_times_reject_a_bad_schedule_or_timezone_by_field() -> None:
    with pytest.raises(ScheduleError) as bad_schedule:
        next_fire_times("0 0 30 2 *", "UTC", after=DEC_3_2026, count=1)
    with pytest.raises(ScheduleError) as bad_zone:
        next_fire_time("@daily", "../etc/passwd", after=DEC_3_2026)

    assert bad_schedule.value.field == "schedule"
    assert bad_zone.value.field == "timezone"


# --- descriptions ---------------------------------------------------------------


def test_weekday_mornings_are_described_in_plain_english() -> None:
    description = describe_cron("0 8 * * 1-5")

    assert "08:00" in description
    assert "Monday through Friday" in description


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("@daily", "At 00:00"),
        ("@hourly", "Every hour"),
        ("@weekly", "Sunday"),
        ("@yearly", "January"),
        ("*/15 * * * *", "Every 15 minutes"),
        ("0 9 1 * 1", "on day 1 of the month, or on Monday"),
        ("0 8 * JAN-MAR mon", "January through March"),
        ("  30   17 * * fri ", "At 17:30, only on Friday"),
    ],
)
def test_descriptions_cover_macros_names_and_steps(
    expression: str, fragment: str
) -> None:
    assert fragment in describe_cron(expression)


def test_invalid_schedules_are_not_described() -> None:
    with pytest.raises(ScheduleError, match="seconds are not supported"):
        describe_cron("*/30 * * * * *")


# --- ranges and steps that name one value ------------------------------------


@pytest.mark.parametrize(
    ("expression", "item", "value"),
    [
        ("5-5 * * * *", "5-5", "5"),
        ("0 9-9 * * *", "9-9", "9"),
        ("0 0 * * 7-7", "7-7", "7"),
        ("0 0 * * SUN-SUN", "SUN-SUN", "0"),
        ("0 0 * * 7/1", "7/1", "7"),
        ("0 0 31/1 * *", "31/1", "31"),
        ("0 0 1 12/1 *", "12/1", "12"),
        ("59/1 * * * *", "59/1", "59"),
        ("5-10/20 * * * *", "5-10/20", "5"),
    ],
)
def test_range_or_step_of_one_value_is_refused_naming_the_value(
    expression: str, item: str, value: str
) -> None:
    with pytest.raises(ScheduleError) as refused:
        validate_cron(expression)

    assert f"'{item}'" in str(refused.value)
    assert f"write {value}" in str(refused.value)


@pytest.mark.parametrize(
    "expression",
    ["5/15 * * * *", "0 22/1 * * *", "0 0 * * 3/2", "0 0 * * 5-7", "30-10 * * * *"],
)
def test_ranges_and_steps_of_several_values_are_accepted(expression: str) -> None:
    assert validate_cron(expression) == expression


def test_hourly_at_a_range_of_one_minute_would_fire_every_minute_in_prefect() -> None:
    """Why one-value ranges are refused: Prefect's computation reads them as '*'."""
    from prefect.server.schemas.schedules import CronSchedule

    dates = list(
        CronSchedule(cron="5-5 * * * *", timezone="UTC")._get_dates_generator(
            n=3, start=DEC_3_2026
        )
    )

    assert [d.minute for d in dates] == [0, 1, 2]
