"""What every report is made of: :class:`Params` in, a :class:`Report` out (sections of rows, charts, warnings).

A report builder (one module per kind) reads the store and returns a :class:`Report`; the renderers
(:mod:`nurture.report.render`, :mod:`nurture.report.html`) never query. The JSON form (:meth:`Report.as_json`)
is the stable contract documented in ``docs/reports.md``: ``kind``, ``since``, ``until``, ``filters``,
``warnings``, the report's ``totals`` keys, then one list per section under the section's ``key``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

#: The long per-prospect lists (leaks, the ranks report's moves) show the first 1,000 unless --limit says
#: otherwise: at a million prospects a list of every one would be unreadable (and slow to build); counts are exact.
LIST_LIMIT = 1000


@dataclass(frozen=True)
class Params:
    """What a report is asked for. ``since`` <= instant < ``until`` (UTC). Empty filters select everything.

    ``limit`` caps the long per-prospect lists (moves, leaks, handoffs); counts and totals are never capped.
    ``stale_days``: the leaks report's "not contacted for N days". ``by``: the conversion report's cohort
    (``month`` or ``quarter``). ``target_rate``: the referral rate the referrals KPI expects (SEEDS 003).
    ``time_zone``: the zone of weeks, months and dates shown.
    """

    since: datetime
    until: datetime
    campaigns: tuple[str, ...] = ()
    industries: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    limit: int | None = None
    stale_days: int = 90
    by: Literal["month", "quarter"] = "month"
    target_rate: float = 0.10
    time_zone: str = "Asia/Tokyo"

    def filters(self) -> dict[str, list[str]]:
        return {"campaign": list(self.campaigns), "industry": list(self.industries), "owner": list(self.owners)}


@dataclass
class Section:
    """One table of a report. ``columns`` are the keys of ``rows`` shown, in order (snake_case, English: the
    HTML report translates them); ``total`` is how many rows there were before ``Params.limit`` cut the list."""

    key: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    total: int | None = None
    note: str = ""
    #: The columns a terminal shows (default: ``columns``): a screen is narrower than a sheet.
    brief: list[str] | None = None


@dataclass
class Chart:
    """A chart the HTML report draws (pygal): ``kind`` line, bar or stacked; one value per x label per series."""

    key: str
    title: str
    kind: Literal["line", "bar", "stacked"]
    x_labels: list[str]
    series: list[tuple[str, list[float | None]]]
    y_title: str = ""
    percent: bool = False


@dataclass
class Report:
    kind: str
    title: str
    params: Params
    sections: list[Section] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The same warnings in Japanese, one for one (the HTML report in Japanese shows these).
    warnings_ja: list[str] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)

    def warn(self, en: str, ja: str) -> None:
        self.warnings.append(en)
        self.warnings_ja.append(ja)

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)

    def as_json(self) -> dict[str, Any]:
        """The documented JSON shape (``docs/reports.md``), stable keys; instants and dates are left as Python
        values for :func:`json_default` to write as ISO 8601 (C-speed ``json.dumps``, not a walk in Python: a
        month of moves at a million prospects is ~150,000 nested values)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "since": self.params.since.isoformat(),
            "until": self.params.until.isoformat(),
            "filters": self.params.filters(),
            "warnings": list(self.warnings),
        }
        out.update(self.totals)
        for s in self.sections:
            out[s.key] = s.rows
        return out


def json_default(value: Any) -> Any:
    """``json.dumps(..., default=json_default)``: instants and dates as ISO 8601."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def rate(part: float, whole: float) -> float | None:
    """``part / whole`` rounded to 4 places, None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


def week_start(day: date) -> date:
    """The Monday of ``day``'s week: weekly charts bucket by it."""
    return day - timedelta(days=day.weekday())


def weeks_between(since: datetime, until: datetime) -> list[date]:
    """The Mondays of every week the period touches, in order."""
    first, last = week_start(since.date()), week_start((until - timedelta(microseconds=1)).date())
    out = []
    while first <= last:
        out.append(first)
        first += timedelta(days=7)
    return out


def as_date(value: Any) -> date:
    """A date from what ``func.date()`` returns: a date (PostgreSQL) or ``YYYY-MM-DD`` text (SQLite)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def limited(rows: Iterable[dict[str, Any]], limit: int | None) -> tuple[list[dict[str, Any]], int]:
    rows = list(rows)
    return (rows if limit is None else rows[:limit]), len(rows)
