"""The sending calendar of a campaign: how often, on which days, at which hours, never on holidays.

Pure functions over a frozen :class:`Cadence` (no database, no clock): the sending engine asks
:func:`is_send_time` ("may I send now, and if not, why?") and :func:`next_send_time` ("when next?").
A campaign file's ``[cadence]`` table is resolved against ``nurture.toml [cadence]`` by
:mod:`nurture.plan.campaigns`; this module only defines and evaluates the rules.

Times are judged in the *recipient's* local time: the caller passes a datetime in the prospect's zone
(``prospect.time_zone``, else ``cadence.time_zone``). Send hours are ``[start, end)``: with ``[9, 18]``,
17:59 is inside and 18:00 is not. Start and end dates are local calendar dates, both inclusive.

Japanese public holidays come from the ``holidays`` package (kept up to date by its maintainers, including
substitute holidays 振替休日 and 国民の休日), with names in Japanese. Company holidays are written as
``MM-DD`` (recurs every year; a range may wrap the year end: ``12-29..01-03`` is 年末年始), or absolute
``YYYY-MM-DD`` dates and ranges (``2026-08-13..2026-08-16``).
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import holidays as holidays_package

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: How far :func:`next_send_time` looks ahead before concluding there is no allowed instant at all
#: (a calendar that blocks every day, or a campaign whose end has passed).
SEARCH_DAYS = 400

_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")
_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class CompanyHoliday:
    """One ``company_holidays`` entry. ``recurring`` entries compare (month, day) and may wrap the year end."""

    text: str
    recurring: bool
    start: tuple[int, int] | date
    end: tuple[int, int] | date

    def contains(self, day: date) -> bool:
        if not self.recurring:
            return self.start <= day <= self.end  # type: ignore[operator]
        key = (day.month, day.day)
        if self.start <= self.end:  # type: ignore[operator]
            return self.start <= key <= self.end  # type: ignore[operator]
        return key >= self.start or key <= self.end  # type: ignore[operator]  # wraps 12-31 -> 01-01


def _month_day(text: str, whole: str) -> tuple[int, int]:
    m = _MONTH_DAY.match(text)
    if not m:
        raise ValueError(f'company holiday "{whole}": "{text}" is not MM-DD or YYYY-MM-DD')
    month, day = int(m.group(1)), int(m.group(2))
    try:
        date(2028, month, day)  # a leap year, so 02-29 is accepted
    except ValueError:
        raise ValueError(f'company holiday "{whole}": {text} is not a day of the year') from None
    return month, day


def _full_date(text: str, whole: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f'company holiday "{whole}": {text} is not a valid date') from None


def parse_company_holiday(text: str) -> CompanyHoliday:
    """Parse ``"12-29..01-03"``, ``"08-15"``, ``"2026-05-01"`` or ``"2026-08-13..2026-08-16"``.

    Raises ValueError with a message that quotes the entry and says what is wrong.
    """
    raw = text.strip()
    parts = [p.strip() for p in raw.split("..")]
    if len(parts) > 2 or not all(parts):
        raise ValueError(
            f'company holiday "{text}" must be a day or a range "FROM..TO" '
            '(e.g. "12-29..01-03", "2026-05-01", "2026-08-13..2026-08-16")'
        )
    full = [bool(_FULL_DATE.match(p)) for p in parts]
    if any(full) and not all(full):
        raise ValueError(f'company holiday "{text}" mixes MM-DD and YYYY-MM-DD; write both ends the same way')
    if all(full):
        first, last = (_full_date(p, text) for p in (parts[0], parts[-1]))
        if last < first:
            raise ValueError(f'company holiday "{text}" ends before it starts')
        return CompanyHoliday(raw, False, first, last)
    return CompanyHoliday(raw, True, _month_day(parts[0], text), _month_day(parts[-1], text))


def zone_named(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name``; ValueError saying how to write one if it is unknown."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f'"{name}" is not a known time zone; use an IANA name such as "Asia/Tokyo" or "America/New_York"'
        ) from None


@dataclass(frozen=True)
class Cadence:
    """A campaign's resolved calendar (every field already merged with the nurture.toml defaults).

    ``interval_days`` is the target gap between two mails of this campaign to one prospect;
    ``interval_by_temperature`` overrides it per temperature (hot/warm/cold). ``monthly_cap`` limits mails of
    this campaign per prospect per calendar month (None: no cap). The global minimum gap across campaigns is
    ``config.cadence.min_gap_days`` and is enforced by the sending engine, not here.
    """

    interval_days: float = 14.0
    interval_by_temperature: Mapping[str, float] = field(default_factory=dict)
    start: date | None = None
    end: date | None = None
    send_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    send_hours: tuple[int, int] = (9, 18)
    time_zone: str = "Asia/Tokyo"
    skip_japanese_holidays: bool = True
    company_holidays: tuple[CompanyHoliday, ...] = ()
    monthly_cap: int | None = None

    def interval_for(self, temperature: str) -> float:
        """Target days between two mails for a prospect of this temperature."""
        return float(self.interval_by_temperature.get(temperature, self.interval_days))

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


@functools.lru_cache(maxsize=64)
def _japanese_holidays(year: int) -> Mapping[date, str]:
    # One immutable dict per year: lookups never mutate shared state, so sender threads may share it.
    return dict(holidays_package.Japan(years=year, language="ja"))


def japanese_holiday(day: date) -> str | None:
    """The Japanese name of the public holiday on ``day`` (e.g. "勤労感謝の日"), or None."""
    return _japanese_holidays(day.year).get(day)


def holiday_reason(day: date, cadence: Cadence) -> str | None:
    """Why ``day`` (a local date) is a holiday for this cadence, or None if it is a working day."""
    if cadence.skip_japanese_holidays:
        name = japanese_holiday(day)
        if name:
            return f"holiday: {name}"
    for rule in cadence.company_holidays:
        if rule.contains(day):
            return f"company holiday {rule.text}"
    return None


def _day_reason(day: date, cadence: Cadence) -> str | None:
    if cadence.start and day < cadence.start:
        return f"before the campaign starts ({cadence.start.isoformat()})"
    if cadence.end and day > cadence.end:
        return f"after the campaign ended ({cadence.end.isoformat()})"
    weekday = WEEKDAYS[day.weekday()]
    if weekday not in cadence.send_days:
        return f"not a send day ({weekday})"
    return holiday_reason(day, cadence)


def _zone_label(local_dt: datetime, cadence: Cadence) -> str:
    return getattr(local_dt.tzinfo, "key", None) or cadence.time_zone


def is_send_time(local_dt: datetime, cadence: Cadence) -> str | None:
    """None if a mail may go out at ``local_dt``, else the reason it may not.

    ``local_dt`` is the recipient's local time (aware, in their zone; a naive value is read as local time
    in ``cadence.time_zone``). Reasons: "before the campaign starts (DATE)", "after the campaign ended
    (DATE)", "not a send day (sat)", "holiday: 勤労感謝の日", "company holiday 12-29..01-03",
    "outside send hours 9-18 Asia/Tokyo".
    """
    if local_dt.tzinfo is None:
        local_dt = local_dt.replace(tzinfo=cadence.zone)
    reason = _day_reason(local_dt.date(), cadence)
    if reason:
        return reason
    first, last = cadence.send_hours
    if not first <= local_dt.hour < last:
        return f"outside send hours {first}-{last} {_zone_label(local_dt, cadence)}"
    return None


def next_send_time(now_utc: datetime, cadence: Cadence, tz: str | tzinfo | None = None) -> datetime | None:
    """The earliest instant >= ``now_utc`` at which :func:`is_send_time` allows sending, in UTC.

    ``tz`` is the recipient's zone (name or tzinfo; None or "" -> ``cadence.time_zone``). Returns None when
    there is no such instant: the campaign's end date has passed, or nothing is allowed within
    :data:`SEARCH_DAYS` days (e.g. every day is a company holiday).
    """
    if now_utc.tzinfo is None:
        raise ValueError("next_send_time needs an aware datetime (use nurture.core.clock.now())")
    zone = zone_named(tz) if isinstance(tz, str) and tz else (tz if isinstance(tz, tzinfo) else cadence.zone)
    local_now = now_utc.astimezone(zone)
    first, last = cadence.send_hours
    day = local_now.date()
    if cadence.start and day < cadence.start:
        day = cadence.start
    for _ in range(SEARCH_DAYS):
        if cadence.end and day > cadence.end:
            return None
        if _day_reason(day, cadence) is None:
            opens = datetime.combine(day, time(first), tzinfo=zone)
            closes = datetime.combine(day, time(0), tzinfo=zone) + timedelta(hours=last)
            candidate = max(opens, local_now)
            # Round-trip through UTC so a DST gap cannot yield a local time that does not exist.
            candidate = candidate.astimezone(UTC).astimezone(zone)
            if candidate < closes and is_send_time(candidate, cadence) is None:
                return candidate.astimezone(UTC)
        day += timedelta(days=1)
    return None
