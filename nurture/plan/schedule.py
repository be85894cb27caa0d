"""Does the way nurture is run reach every send window? (``[schedule]`` in nurture.toml)

nurture sends only when something runs ``nurture send`` (cron, a systemd timer); the engine then mails each
prospect only inside their own send window (a campaign's ``send_days`` and ``send_hours`` in the prospect's zone).
A schedule that runs only in Tokyo office hours never reaches a New York prospect's 9:00-16:00, and nothing fails:
the prospect is just "deferred" forever. So the schedule is declared in ``[schedule] cron`` (the same expression as
the crontab line) and these functions compare it with the windows:

- :func:`reaches` — whether the runs of one week ever fall inside a campaign's window in a zone;
- :func:`window_warnings` — one warning per (campaign, zone) never reached, with the prospects it concerns;
- :func:`zone_warnings` — prospects without a zone whose address's country (``.jp``, ``.de``, ``.uk`` ...) is
  hours away from the workspace zone they fall back to.

The README's schedule (every 15 minutes around the clock) reaches every window of at least 15 minutes.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

from cronsim import CronSim
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from nurture.core.config import Config
from nurture.plan.cadence import WEEKDAYS, Cadence
from nurture.plan.campaigns import Campaign
from nurture.plan.segments import campaign_clauses, mailable_clauses
from nurture.store.models import Prospect
from nurture.store.suppression import not_suppressed

#: A zone-less prospect whose country's zones are all further than this from the fallback zone is warned about.
FAR_HOURS = 3.0
#: Country-code TLDs that are not the ISO 3166 code of the country.
_TLD_COUNTRY = {"uk": "GB"}


@dataclass(frozen=True)
class ScheduleWarning:
    """A finding about the schedule: what, how many prospects, and how to fix it."""

    kind: str  # "window" | "zone"
    message: str
    prospects: int
    campaign: str = ""
    zone: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "campaign": self.campaign or None,
            "zone": self.zone or None,
            "prospects": self.prospects,
            "message": self.message,
        }


@functools.lru_cache(maxsize=32)
def _runs(cron: str, zone: str, week_start: datetime) -> tuple[datetime, ...]:
    tz = ZoneInfo(zone)
    start = week_start.astimezone(tz).replace(tzinfo=None)
    end = start + timedelta(days=7)
    out = []
    for fire in CronSim(cron, start - timedelta(seconds=1)):  # CronSim yields instants after its start
        if fire >= end:
            break
        out.append(fire.replace(tzinfo=tz).astimezone(UTC))
    return tuple(out)


def runs_in_week(config: Config, now: datetime) -> tuple[datetime, ...]:
    """The instants (UTC) ``[schedule] cron`` runs in the week from ``now`` (read in the schedule's zone)."""
    start = now.replace(minute=0, second=0, microsecond=0)  # an hour boundary keeps the cache useful
    return _runs(config.schedule.cron, config.schedule_time_zone, start)


def reaches(cadence: Cadence, zone: str, runs: Iterable[datetime]) -> bool:
    """Whether any run falls on one of the cadence's send days, inside its send hours, in ``zone``.

    Holidays are left out on purpose: a week with a holiday still has other send days."""
    tz = ZoneInfo(zone)
    first, last = cadence.send_hours
    for run in runs:
        local = run.astimezone(tz)
        if WEEKDAYS[local.weekday()] in cadence.send_days and first <= local.hour < last:
            return True
    return False


def describe_window(campaign: Campaign, zone: str) -> str:
    cadence = campaign.cadence
    return f"{campaign.name} sends {cadence.send_hours[0]}-{cadence.send_hours[1]} {'/'.join(cadence.send_days)} {zone}"


def describe_schedule(config: Config) -> str:
    return f'[schedule] cron "{config.schedule.cron}" ({config.schedule_time_zone})'


def zone_counts(conn: Connection, campaigns: Iterable[Campaign], config: Config, now: datetime) -> dict[str, Counter]:
    """Per campaign, its mailable members by zone (a prospect without one counts in the workspace zone)."""
    zone = func.coalesce(Prospect.time_zone, "")
    out: dict[str, Counter] = {}
    for campaign in campaigns:
        counts: Counter = Counter()
        for name, n in conn.execute(
            select(zone, func.count())
            .where(
                *mailable_clauses(now),
                *campaign_clauses(campaign, now, config.workspace.language),
                not_suppressed(),
            )
            .group_by(zone)
        ):
            counts[name or config.default_time_zone] += n
        out[campaign.name] = counts
    return out


def window_warnings(
    config: Config, campaigns: Iterable[Campaign], counts: Mapping[str, Counter], now: datetime
) -> list[ScheduleWarning]:
    """A warning for each campaign and zone (with prospects in ``counts``) whose window the schedule never reaches."""
    runs = runs_in_week(config, now)
    warnings = []
    for campaign in campaigns:
        for zone, n in sorted(counts.get(campaign.name, Counter()).items()):
            if n and not reaches(campaign.cadence, zone, runs):
                warnings.append(
                    ScheduleWarning(
                        "window",
                        f"{n} prospect{'s' * (n != 1)} in {zone} never mailed: {describe_window(campaign, zone)}, "
                        f"but {describe_schedule(config)} never runs then; run nurture every 15 minutes around the "
                        'clock (cron = "*/15 * * * *", see the README) and declare it in [schedule]',
                        n,
                        campaign.name,
                        zone,
                    )
                )
    return warnings


def config_window_warnings(config: Config, campaigns: Iterable[Campaign], now: datetime) -> list[ScheduleWarning]:
    """:func:`window_warnings` without a database: the workspace zone (prospects without a zone of their own)
    and each campaign's own zone (where its audience usually is), for ``nurture check`` before ``nurture init``."""
    runs = runs_in_week(config, now)
    warnings = []
    for campaign in campaigns:
        for zone in dict.fromkeys((config.default_time_zone, campaign.cadence.time_zone)):
            if not reaches(campaign.cadence, zone, runs):
                warnings.append(
                    ScheduleWarning(
                        "window",
                        f"prospects in {zone} would never be mailed: {describe_window(campaign, zone)}, but "
                        f"{describe_schedule(config)} never runs then; run nurture every 15 minutes around the clock "
                        '(cron = "*/15 * * * *", see the README) and declare it in [schedule]',
                        0,
                        campaign.name,
                        zone,
                    )
                )
    return warnings


@functools.cache
def _country_zones() -> dict[str, tuple[str, ...]]:
    """ISO country code -> its IANA zones (tzdata's zone.tab)."""
    zones: dict[str, list[str]] = {}
    text = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split("\t")
        zones.setdefault(parts[0], []).append(parts[2])
    return {cc: tuple(z) for cc, z in zones.items()}


def country_of(email: str) -> str | None:
    """The ISO code of the address's country-code TLD (``a@b.co.jp`` -> JP), or None (``.com``, ``.org`` ...)."""
    tld = email.rsplit(".", 1)[-1].lower() if "." in email else ""
    code = _TLD_COUNTRY.get(tld, tld.upper())
    return code if len(tld) == 2 and code in _country_zones() else None


def hours_apart(country: str, zone: str, now: datetime) -> float:
    """The smallest distance in hours between ``zone`` and any zone of ``country`` at ``now``."""
    offset = now.astimezone(ZoneInfo(zone)).utcoffset() or timedelta()
    best = min(
        abs(((now.astimezone(ZoneInfo(z)).utcoffset() or timedelta()) - offset).total_seconds())
        for z in _country_zones()[country]
    )
    return best / 3600


def zone_warnings(conn: Connection, config: Config, now: datetime, batch: int = 5000) -> list[ScheduleWarning]:
    """Mailable prospects without a zone at an address of a country far (> :data:`FAR_HOURS`) from the workspace
    zone they fall back to, one warning per country."""
    fallback = config.default_time_zone
    far: Counter = Counter()
    distance: dict[str, float] = {}
    last = 0
    while True:
        rows = conn.execute(
            select(Prospect.id, Prospect.email)
            .where(
                *mailable_clauses(now),
                func.coalesce(Prospect.time_zone, "") == "",
                not_suppressed(),
                Prospect.id > last,
            )
            .order_by(Prospect.id)
            .limit(batch)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        for row in rows:
            country = country_of(row.email)
            if country is None:
                continue
            if country not in distance:
                distance[country] = hours_apart(country, fallback, now)
            if distance[country] > FAR_HOURS:
                far[country] += 1
    return [
        ScheduleWarning(
            "zone",
            f"{n} prospect{'s' * (n != 1)} without a time zone at .{_tld_of(cc)} addresses "
            f"{'is' if n == 1 else 'are'} mailed in {fallback} "
            f"hours ({distance[cc]:.0f} h from {cc}); set their time_zone (import a time_zone column) or "
            "[workspace] time_zone",
            n,
            zone=fallback,
        )
        for cc, n in sorted(far.items())
    ]


def _tld_of(country: str) -> str:
    return next((tld for tld, cc in _TLD_COUNTRY.items() if cc == country), country.lower())


def schedule_warnings(
    conn: Connection, campaigns: Iterable[Campaign], config: Config, now: datetime
) -> list[ScheduleWarning]:
    """Every schedule finding for these campaigns: windows never reached, zone-less prospects far from home."""
    campaigns = [c for c in campaigns if c.status == "active"]
    return window_warnings(config, campaigns, zone_counts(conn, campaigns, config, now), now) + zone_warnings(
        conn, config, now
    )
