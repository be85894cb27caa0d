"""Cadence rules with fixed datetimes: send days and hours, Japanese holidays, company holidays, next time."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from nurture.plan.cadence import Cadence, holiday_reason, is_send_time, next_send_time, parse_company_holiday

JST = ZoneInfo("Asia/Tokyo")
NY = ZoneInfo("America/New_York")


def cadence(**changes) -> Cadence:
    base = dict(
        send_days=("mon", "tue", "wed", "thu", "fri"),
        send_hours=(9, 18),
        time_zone="Asia/Tokyo",
        skip_japanese_holidays=True,
        company_holidays=(parse_company_holiday("12-29..01-03"), parse_company_holiday("08-13..08-16")),
    )
    base.update(changes)
    return Cadence(**base)


def test_ordinary_weekday_inside_hours_is_allowed():
    assert is_send_time(datetime(2026, 11, 24, 10, 0, tzinfo=JST), cadence()) is None


@pytest.mark.parametrize(
    ("local", "reason"),
    [
        (datetime(2026, 11, 24, 17, 59, tzinfo=JST), None),
        (datetime(2026, 11, 24, 18, 0, tzinfo=JST), "outside send hours 9-18 Asia/Tokyo"),
        (datetime(2026, 11, 24, 8, 59, tzinfo=JST), "outside send hours 9-18 Asia/Tokyo"),
        (datetime(2026, 11, 24, 9, 0, tzinfo=JST), None),
    ],
)
def test_send_hours_are_start_inclusive_end_exclusive(local, reason):
    assert is_send_time(local, cadence()) == reason


def test_weekend_is_not_a_send_day():
    assert is_send_time(datetime(2026, 11, 21, 10, tzinfo=JST), cadence()) == "not a send day (sat)"
    assert is_send_time(datetime(2026, 11, 22, 10, tzinfo=JST), cadence()) == "not a send day (sun)"


def test_japanese_public_holiday_on_a_monday_has_its_japanese_name():
    # 2026-11-23 is 勤労感謝の日, a Monday.
    assert date(2026, 11, 23).weekday() == 0
    assert is_send_time(datetime(2026, 11, 23, 10, tzinfo=JST), cadence()) == "holiday: 勤労感謝の日"
    assert is_send_time(datetime(2026, 11, 23, 10, tzinfo=JST), cadence(skip_japanese_holidays=False)) is None


def test_substitute_holiday_is_skipped():
    assert is_send_time(datetime(2026, 5, 6, 10, tzinfo=JST), cadence()) == "holiday: 振替休日"


def test_new_year_is_both_a_public_and_a_company_holiday():
    # 2027-01-01 (Fri) is 元日; with public holidays off, the company's 12-29..01-03 still blocks it.
    assert is_send_time(datetime(2027, 1, 1, 10, tzinfo=JST), cadence()) == "holiday: 元日"
    assert (
        is_send_time(datetime(2027, 1, 1, 10, tzinfo=JST), cadence(skip_japanese_holidays=False))
        == "company holiday 12-29..01-03"
    )
    assert is_send_time(datetime(2026, 12, 29, 10, tzinfo=JST), cadence()) == "company holiday 12-29..01-03"
    assert is_send_time(datetime(2026, 12, 28, 10, tzinfo=JST), cadence()) is None
    assert is_send_time(datetime(2027, 1, 4, 10, tzinfo=JST), cadence()) is None


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        (
            "12-29..01-03",
            [date(2026, 12, 29), date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 3)],
            [date(2026, 12, 28), date(2027, 1, 4), date(2026, 6, 1)],
        ),
        ("08-13..08-16", [date(2026, 8, 13), date(2030, 8, 16)], [date(2026, 8, 12), date(2026, 8, 17)]),
        ("05-01", [date(2026, 5, 1), date(2031, 5, 1)], [date(2026, 5, 2)]),
        ("2026-08-13..2026-08-16", [date(2026, 8, 13), date(2026, 8, 16)], [date(2027, 8, 14), date(2026, 8, 17)]),
        ("2026-05-01", [date(2026, 5, 1)], [date(2027, 5, 1)]),
        ("02-29", [date(2028, 2, 29)], [date(2028, 2, 28)]),
    ],
)
def test_company_holiday_forms(text, inside, outside):
    rule = parse_company_holiday(text)
    assert all(rule.contains(d) for d in inside)
    assert not any(rule.contains(d) for d in outside)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("02-30", "not a day of the year"),
        ("13-01", "not a day of the year"),
        ("2026-08-16..2026-08-13", "ends before it starts"),
        ("12-29..2027-01-03", "mixes MM-DD and YYYY-MM-DD"),
        ("2026-02-30", "not a valid date"),
        ("12/29", "is not MM-DD or YYYY-MM-DD"),
        ("01..02..03", "must be a day or a range"),
    ],
)
def test_bad_company_holidays_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_company_holiday(text)


def test_holiday_reason_is_none_on_a_working_day():
    assert holiday_reason(date(2026, 11, 24), cadence()) is None


def test_start_and_end_dates_are_inclusive_local_dates():
    c = cadence(start=date(2026, 12, 1), end=date(2026, 12, 10))
    assert is_send_time(datetime(2026, 11, 30, 10, tzinfo=JST), c) == "before the campaign starts (2026-12-01)"
    assert is_send_time(datetime(2026, 12, 1, 9, tzinfo=JST), c) is None
    assert is_send_time(datetime(2026, 12, 10, 17, tzinfo=JST), c) is None
    assert is_send_time(datetime(2026, 12, 11, 10, tzinfo=JST), c) == "after the campaign ended (2026-12-10)"


def test_naive_local_time_is_read_in_the_cadence_zone():
    assert is_send_time(datetime(2026, 11, 24, 18, 0), cadence()) == "outside send hours 9-18 Asia/Tokyo"


def test_reason_names_the_recipients_zone():
    assert (
        is_send_time(datetime(2026, 11, 24, 20, tzinfo=NY), cadence(skip_japanese_holidays=False))
        == "outside send hours 9-18 America/New_York"
    )


def test_interval_per_temperature():
    c = cadence(interval_days=14.0, interval_by_temperature={"hot": 7.0, "cold": 30.0})
    assert (c.interval_for("hot"), c.interval_for("warm"), c.interval_for("cold")) == (7.0, 14.0, 30.0)


def test_next_send_time_now_when_allowed():
    now = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 10:00 JST Tuesday
    assert next_send_time(now, cadence()) == now


def test_next_send_time_after_18_jst_skips_holiday_and_weekend():
    # Friday 2026-11-20 18:00 JST: closed; Sat, Sun, then Monday 23rd is 勤労感謝の日 -> Tuesday 09:00 JST.
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert now.astimezone(JST).hour == 18
    assert next_send_time(now, cadence()) == datetime(2026, 11, 24, 9, 0, tzinfo=JST).astimezone(UTC)
    # One minute earlier it is still Friday 17:59 JST: send now.
    earlier = datetime(2026, 11, 20, 8, 59, tzinfo=UTC)
    assert next_send_time(earlier, cadence()) == earlier


def test_next_send_time_over_the_year_end():
    now = datetime(2026, 12, 28, 10, 0, tzinfo=UTC)  # 19:00 JST Monday 28th
    # 29th..3rd company holidays; 2027-01-04 is a Monday and no holiday.
    assert next_send_time(now, cadence()) == datetime(2027, 1, 4, 9, 0, tzinfo=JST).astimezone(UTC)


def test_next_send_time_in_the_recipients_zone():
    now = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 20:00 Monday in New York
    got = next_send_time(now, cadence(skip_japanese_holidays=False), "America/New_York")
    assert got == datetime(2026, 11, 24, 9, 0, tzinfo=NY).astimezone(UTC)


def test_next_send_time_waits_for_start_and_gives_up_after_end():
    c = cadence(start=date(2027, 2, 1), end=date(2027, 2, 5))
    assert next_send_time(datetime(2026, 11, 24, 1, tzinfo=UTC), c) == datetime(2027, 2, 1, 9, tzinfo=JST)
    assert next_send_time(datetime(2027, 2, 6, 1, tzinfo=UTC), c) is None


def test_next_send_time_with_a_calendar_that_never_opens():
    c = cadence(company_holidays=(parse_company_holiday("01-01..12-31"),))
    assert next_send_time(datetime(2026, 11, 24, 1, tzinfo=UTC), c) is None


def test_next_send_time_needs_an_aware_instant():
    with pytest.raises(ValueError, match="aware"):
        next_send_time(datetime(2026, 11, 24, 1), cadence())


def test_send_hours_until_midnight():
    c = cadence(send_hours=(9, 24))
    assert is_send_time(datetime(2026, 11, 24, 23, 59, tzinfo=JST), c) is None
    now = datetime(2026, 11, 24, 14, 59, tzinfo=UTC)  # 23:59 JST
    assert next_send_time(now, c) == now
