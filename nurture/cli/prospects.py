"""``nurture prospects import|list|show``."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from nurture.cli.app import App, pass_app
from nurture.cli.output import dump_json, import_verdict
from nurture.core.errors import InputError
from nurture.people import get_prospect, import_file, list_prospects
from nurture.people.outcomes import record_referral, record_win
from nurture.store.models import RANKS, STAGES, STATUSES, TEMPERATURES


@click.group("prospects")
def prospects() -> None:
    """Load, list and inspect prospects."""


def _parse_map(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        if "=" not in item:
            raise InputError(f"--map {item!r}: expected COLUMN=FIELD", hint='e.g. --map "E-Mail (work)=email"')
        column, target = item.rsplit("=", 1)
        out[column.strip()] = target.strip()
    return out


@prospects.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--encoding", help="Force the text encoding of a CSV (utf-8, utf-8-sig, cp932). Default: detected.")
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="COLUMN=FIELD",
    help="Map a column to a field (repeatable); FIELD '-' ignores the column.",
)
@click.option("--sheet", help="The worksheet of an .xlsx file (default: the first).")
@click.option("--skip-invalid", is_flag=True, help="Import the good rows and list the bad ones.")
@click.option("--dry-run", is_flag=True, help="Check and count, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def import_(
    app: App,
    file: str,
    encoding: str | None,
    maps: tuple[str, ...],
    sheet: str | None,
    skip_invalid: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Import prospects from a CSV (UTF-8 / Shift_JIS) or .xlsx file.

    \b
    Columns are recognised in English or Japanese (email/メールアドレス, name/氏名, company/会社名,
    title/役職, industry/業種, temperature/温度感, last contact/最終接触日, next action/次回アクション,
    due/次回期限, owner/担当者, consent/同意, tags/タグ, ...); other columns are kept as custom attributes.
    Existing prospects (same address, any case) are updated; blank cells leave values as they are;
    consent and unsubscribes are never reset. If any row is invalid nothing is imported, unless
    --skip-invalid. Rows without a consent basis are imported but never mailed until one is recorded.
    """
    engine = app.engine()
    console = Console(stderr=True)
    show_progress = not as_json and console.is_terminal
    with Progress(
        SpinnerColumn(),
        TextColumn("importing {task.fields[name]}"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
        transient=True,
    ) as progress:
        task = progress.add_task("import", total=None, name=file)
        summary = import_file(
            engine,
            file,
            default_time_zone=app.config.cadence.time_zone,
            encoding=encoding,
            mapping=_parse_map(maps),
            sheet=sheet,
            skip_invalid=skip_invalid,
            dry_run=dry_run,
            progress=lambda n: progress.update(task, completed=n),
        )
    import_verdict(
        file, summary.rejected, skip_invalid=skip_invalid, as_json=as_json, summary=summary.as_dict(), verb="import"
    )
    verb = "would be" if dry_run else "are"
    click.echo(
        f"{file} ({summary.encoding or 'xlsx'}): created {summary.created}, updated {summary.updated}, "
        f"unchanged {summary.unchanged}, rejected {len(summary.rejected)}"
        + (" — dry run, nothing written" if dry_run else "")
    )
    if summary.attributes:
        click.echo(f"  kept as custom attributes: {', '.join(summary.attributes)}")
    if summary.no_consent:
        click.echo(
            f"  {summary.no_consent} prospect(s) {verb} without a consent basis: they will not be mailed "
            "until one is recorded (column 同意/consent: opt_in, business_card, existing_relationship, "
            "published_business_address)"
        )
    if summary.suppressed:
        click.echo(f"  {summary.suppressed} row(s) skipped: the address was erased at the person's request")


def _choice(values: tuple[str, ...]) -> click.Choice:
    return click.Choice(values, case_sensitive=False)


@prospects.command("list")
@click.option("--temperature", multiple=True, type=_choice(TEMPERATURES), help="hot, warm or cold (repeatable).")
@click.option("--industry", multiple=True, help="Industry as written in the data (repeatable).")
@click.option("--rank", multiple=True, type=_choice(RANKS), help="A, B or C (repeatable).")
@click.option("--stage", multiple=True, type=click.Choice(STAGES), help="Stage (repeatable).")
@click.option("--owner", multiple=True, help="Owner (repeatable).")
@click.option("--status", multiple=True, type=_choice(STATUSES), help="Status (repeatable).")
@click.option("--tag", help="Only prospects with this tag.")
@click.option("--stale-days", type=click.IntRange(min=0), metavar="N", help="No contact for N days or more (or never).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(
    app: App,
    temperature: tuple[str, ...],
    industry: tuple[str, ...],
    rank: tuple[str, ...],
    stage: tuple[str, ...],
    owner: tuple[str, ...],
    status: tuple[str, ...],
    tag: str | None,
    stale_days: int | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List prospects, filtered."""
    rows = list_prospects(
        app.engine(),
        temperature=[t.lower() for t in temperature],
        industry=industry,
        rank=[r.upper() for r in rank],
        stage=stage,
        owner=owner,
        status=[s.lower() for s in status],
        stale_days=stale_days,
        tag=tag,
        limit=limit,
    )
    if as_json:
        dump_json(list(rows))
        return
    zone = ZoneInfo(app.config.cadence.time_zone)
    table = Table(show_lines=False, header_style="bold", box=box.SIMPLE_HEAD)
    for column in (
        "email",
        "name",
        "company",
        "industry",
        "temp",
        "rank",
        "stage",
        "owner",
        "last contact",
        "next action",
        "status",
    ):
        table.add_column(column, overflow="fold")
    count = 0
    for r in rows:
        count += 1
        last = r["last_contact_at"].astimezone(zone).date().isoformat() if r["last_contact_at"] else "-"
        nxt = r["next_action"] + (f" ({r['next_action_due']})" if r["next_action_due"] else "")
        table.add_row(
            r["email"],
            r["name"],
            r["company"],
            r["industry"],
            r["temperature"],
            r["rank"],
            r["stage"],
            r["owner"],
            last,
            nxt or "-",
            r["status"],
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped output: don't wrap to 80 columns
    console.print(table)
    console.print(f"{count} prospect(s)")


@prospects.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, email: str, as_json: bool) -> None:
    """Show everything nurture knows about one prospect."""
    data = get_prospect(app.engine(), email)
    if as_json:
        dump_json(data)
        return
    zone = ZoneInfo(app.config.cadence.time_zone)
    for key, value in data.items():
        if value in (None, "", {}, []):
            continue
        if isinstance(value, datetime):
            value = value.astimezone(zone).strftime(f"%Y-%m-%d %H:%M ({zone.key})")
        if isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False)
        click.echo(f"{key:28} {value}")


@prospects.command("won")
@click.argument("email")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="The day it was won (default: today).")
@click.option("--amount", type=float, help="Order value (any currency, kept as a number).")
@click.option("--note", default="", help="Free text kept with the win.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def won(app: App, email: str, day: datetime | None, amount: float | None, note: str, as_json: bool) -> None:
    """Record a deal won with this prospect (for `nurture report conversion`).

    The win remembers whether the prospect was short-term (a next action pending) or long-term at the time.
    Recording the same win (same day) again changes nothing.
    """
    done = record_win(
        app.engine(),
        email,
        day=day.date() if day else None,
        amount=amount,
        note=note,
        zone=app.config.cadence.time_zone,
    )
    if as_json:
        dump_json({"email": done.email, "recorded": done.recorded, "detail": done.detail})
        return
    click.echo(f"{done.email}: {'won' if done.recorded else 'already recorded'} ({done.detail})")


@prospects.command("referral")
@click.argument("client")
@click.argument("referred")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="The day of the referral (default: today).")
@click.option("--note", default="", help="Free text kept with the referral.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def referral(app: App, client: str, referred: str, day: datetime | None, note: str, as_json: bool) -> None:
    """Record that the client CLIENT referred REFERRED (an address) — for `nurture report referrals`.

    \b
    Example: nurture prospects referral tanaka@client.co.jp sato@newlead.co.jp --date 2026-03-02
    """
    done = record_referral(
        app.engine(), client, referred, day=day.date() if day else None, note=note, zone=app.config.cadence.time_zone
    )
    if as_json:
        dump_json({"email": done.email, "recorded": done.recorded, "detail": done.detail})
        return
    click.echo(f"{done.email}: {done.detail}" + ("" if done.recorded else " (already recorded)"))


COMMANDS = [prospects]
