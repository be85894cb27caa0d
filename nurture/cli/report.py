"""``nurture report KIND``: the seven reports (:mod:`nurture.report`) in five formats."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.console import Console

from nurture.cli.app import App, pass_app
from nurture.core import clock
from nurture.core.errors import InputError
from nurture.plan.campaigns import load_campaigns
from nurture.report import KINDS, Params, build
from nurture.report.html import to_html
from nurture.report.render import print_table, to_csv, to_json, to_xlsx

FORMATS = ("table", "csv", "json", "html", "xlsx")
DEFAULT_DAYS = {"conversion": 730}  # conversion is about years: its cohorts default to the last 24 months


def parse_moment(text: str, zone: str, option: str) -> datetime:
    """``YYYY-MM-DD`` (midnight in the workspace's zone) or an ISO 8601 instant (naive: the workspace's zone)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} {text!r} is not a date", hint="use YYYY-MM-DD or an ISO 8601 instant") from None
    return (value if value.tzinfo else value.replace(tzinfo=ZoneInfo(zone))).astimezone(UTC)


def params_for(
    kind: str,
    zone: str,
    since: str | None,
    until: str | None,
    **kwargs: object,
) -> Params:
    end = parse_moment(until, zone, "--until") if until else clock.now()
    start = parse_moment(since, zone, "--since") if since else end - timedelta(days=DEFAULT_DAYS.get(kind, 28))
    if start >= end:
        raise InputError(f"--since ({start:%Y-%m-%d}) is not before --until ({end:%Y-%m-%d})", hint="swap them")
    return Params(since=start, until=end, time_zone=zone, **kwargs)  # type: ignore[arg-type]


@click.command("report")
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--since", metavar="DATE", help="Start (YYYY-MM-DD or ISO instant; default 4 weeks before --until).")
@click.option("--until", metavar="DATE", help="End, exclusive (default: now).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write to this file (html and xlsx need it or print).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--campaign", multiple=True, help="Only this campaign (repeatable).")
@click.option("--industry", multiple=True, help="Only prospects of this industry (repeatable).")
@click.option("--owner", multiple=True, help="Only prospects (or handoffs) of this owner (repeatable).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="At most N rows in the per-prospect lists (leaks and the ranks moves: 1,000 unless given).",
)
@click.option("--section", help="CSV: the section to write (default: the report's first).")
@click.option("--language", type=click.Choice(["ja", "en"]), help="HTML language (default: ja in Asia/Tokyo, else en).")
@click.option(
    "--stale-days", type=click.IntRange(min=1), default=90, show_default=True, help="leaks: no contact for N days."
)
@click.option(
    "--by", type=click.Choice(["month", "quarter"]), default="month", show_default=True, help="conversion: cohort."
)
@click.option(
    "--target-rate", type=click.FloatRange(0, 1), default=0.10, show_default=True, help="referrals: expected rate."
)
@pass_app
def report(
    app: App,
    kind: str,
    since: str | None,
    until: str | None,
    fmt: str,
    out: str | None,
    as_json: bool,
    campaign: tuple[str, ...],
    industry: tuple[str, ...],
    owner: tuple[str, ...],
    limit: int | None,
    section: str | None,
    language: str | None,
    stale_days: int,
    by: str,
    target_rate: float,
) -> None:
    """Print a report: ranks, campaigns, leaks, conversion, referrals, handoffs or content.

    \b
      ranks       every rank/temperature/stage move with the events behind it (human and machine apart),
                  the transition matrix, and which campaign items took part in the moves
      campaigns   per campaign and item: sent, delivered, opens and clicks (unique vs total, human vs
                  machine), unsubscribes, complaint rate (warning 0.1 %, alarm 0.3 %), top links
      leaks       not contacted for --stale-days, overdue next actions, never mailed and why, silent
                  longer than the cadence, handoffs not acknowledged
      conversion  long-term conversion by cohort (--by month|quarter; default the last 24 months)
      referrals   per client: value deliveries, referrals, rate; the KPI clients x deliveries x rate
      handoffs    per reason: acknowledged vs rejected, time to decision, rejection reasons
      content     weeks of unsent content per segment member; warns when it runs dry within 8 weeks
    \b
    Examples:
      nurture report ranks
      nurture report campaigns --since 2026-01-01 --format xlsx --out campaigns.xlsx
      nurture report leaks --owner 佐藤 --format html --language ja --out leaks.html
    """
    fmt = "json" if as_json else fmt
    config = app.config
    zone = config.cadence.time_zone
    params = params_for(
        kind,
        zone,
        since,
        until,
        campaigns=campaign,
        industries=industry,
        owners=owner,
        limit=limit,
        stale_days=stale_days,
        by=by,
        target_rate=target_rate,
    )
    engine = app.engine()
    defs = load_campaigns(config) if kind in ("leaks", "content") else []
    result = build(kind, engine, params, config, defs)
    if fmt == "table":
        if out:
            with open(out, "w", encoding="utf-8") as handle:
                print_table(result, Console(file=handle, width=200), limit)
            return
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)  # piped output: don't wrap to 80 columns
        print_table(result, console, limit)
        return
    if fmt == "xlsx":
        data = to_xlsx(result)
        target = Path(out or f"{kind}.xlsx")
        target.write_bytes(data)
        click.echo(f"wrote {target}", err=True)
        return
    if fmt == "html":
        lang = language or ("ja" if zone == "Asia/Tokyo" else "en")
        text = to_html(result, lang, generated=clock.now())
    elif fmt == "csv":
        text = to_csv(result, section)
    else:
        text = to_json(result) + "\n"
    if out:
        Path(out).write_text(text, encoding="utf-8", newline="")
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


COMMANDS = [report]
