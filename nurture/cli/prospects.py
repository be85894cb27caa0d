"""``nurture prospects import|list|show``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from nurture import score
from nurture.cli.app import App, pass_app
from nurture.cli.output import dump_json, import_verdict
from nurture.core import clock
from nurture.core.errors import InputError
from nurture.people import get_prospect, import_file, list_prospects
from nurture.people.export import ENCODINGS, FORMATS, export_prospects
from nurture.people.outcomes import record_referral, record_win
from nurture.store.models import RANKS, STAGES, STATUSES, TEMPERATURES

F = TypeVar("F", bound=Callable[..., Any])


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
@click.option(
    "--header-row",
    type=click.IntRange(min=1),
    metavar="N",
    help="The row holding the column names, as Excel numbers rows (default: found below any title rows).",
)
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
    header_row: int | None,
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
    --skip-invalid; every problem of every row is listed. Rows without a consent basis are imported but
    never mailed until one is recorded. Title rows above the column names are skipped.

    \b
    Business-card exports (Sansan, Eight): 名刺交換日 gives the consent basis business_card (where a
    prospect has none yet); 姓/名 make the name; an opt-out column (配信停止, or メール配信 = 不可)
    suppresses the address. A leading apostrophe that `prospects export` put before = + - @ is removed.
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
            header_row=header_row,
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
        f"unchanged {summary.unchanged}, rejected {summary.rejected_rows}"
        + (" — dry run, nothing written" if dry_run else "")
    )
    if summary.header_row > 1:
        click.echo(f"  column names read from row {summary.header_row} (the rows above were taken as titles)")
    if summary.attributes:
        click.echo(f"  kept as custom attributes: {', '.join(summary.attributes)}")
    if summary.no_consent:
        click.echo(
            f"  {summary.no_consent} prospect(s) {verb} without a consent basis: they will not be mailed "
            "until one is recorded (column 同意/consent: opt_in, business_card, existing_relationship, "
            "published_business_address)"
        )
    if summary.opted_out:
        click.echo(f"  {summary.opted_out} row(s) {verb} marked as opted out in the file: suppressed, never mailed")
    if summary.suppressed:
        click.echo(f"  {summary.suppressed} row(s) skipped: the address was erased at the person's request")


def _choice(values: tuple[str, ...]) -> click.Choice:
    return click.Choice(values, case_sensitive=False)


_FILTER_OPTIONS = (
    click.option("--temperature", multiple=True, type=_choice(TEMPERATURES), help="hot, warm or cold (repeatable)."),
    click.option("--industry", multiple=True, help="Industry as written in the data (repeatable)."),
    click.option("--rank", multiple=True, type=_choice(RANKS), help="A, B or C (repeatable)."),
    click.option("--stage", multiple=True, type=click.Choice(STAGES), help="Stage (repeatable)."),
    click.option("--owner", multiple=True, help="Owner (repeatable)."),
    click.option("--status", multiple=True, type=_choice(STATUSES), help="Status (repeatable)."),
    click.option("--tag", help="Only prospects with this tag."),
    click.option(
        "--stale-days", type=click.IntRange(min=0), metavar="N", help="No contact for N days or more (or never)."
    ),
)


def filter_options(command: F) -> F:
    """The filters of ``prospects list``, shared with ``prospects export``."""
    for option in reversed(_FILTER_OPTIONS):
        command = option(command)
    return command


def _filters(
    temperature: tuple[str, ...],
    industry: tuple[str, ...],
    rank: tuple[str, ...],
    stage: tuple[str, ...],
    owner: tuple[str, ...],
    status: tuple[str, ...],
    tag: str | None,
    stale_days: int | None,
) -> dict[str, Any]:
    return {
        "temperature": [t.lower() for t in temperature],
        "industry": industry,
        "rank": [r.upper() for r in rank],
        "stage": stage,
        "owner": owner,
        "status": [s.lower() for s in status],
        "stale_days": stale_days,
        "tag": tag,
    }


@prospects.command("list")
@filter_options
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
        limit=limit,
        **_filters(temperature, industry, rank, stage, owner, status, tag, stale_days),
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


@prospects.command("export")
@filter_options
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), help="csv or xlsx (default: from --out's suffix, else csv)."
)
@click.option(
    "--encoding",
    type=click.Choice(ENCODINGS, case_sensitive=False),
    default="utf-8-sig",
    show_default=True,
    help="Text encoding of a CSV: utf-8-sig (Excel opens it everywhere) or cp932 (Shift_JIS, Excel in Japan).",
)
@click.option(
    "--headers",
    "language",
    type=click.Choice(("ja", "en")),
    help="Column names in Japanese or English (default: ja when [cadence] time_zone is Asia/Tokyo, else en).",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), help="The file to write (default: stdout, CSV).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON (needs --out).")
@pass_app
def export(
    app: App,
    temperature: tuple[str, ...],
    industry: tuple[str, ...],
    rank: tuple[str, ...],
    stage: tuple[str, ...],
    owner: tuple[str, ...],
    status: tuple[str, ...],
    tag: str | None,
    stale_days: int | None,
    fmt: str | None,
    encoding: str,
    language: str | None,
    out: str | None,
    as_json: bool,
) -> None:
    """Export prospects (the filters of `prospects list`) as CSV or .xlsx.

    \b
    The columns are the ones `prospects import` reads, so a file exported, edited in Excel and
    imported again changes exactly what was edited. Dates are in the configured time zone. A text
    cell starting with = + - @ (a formula to a spreadsheet) is written with a leading apostrophe in a
    CSV (import removes it again), and as quoted text in an .xlsx. Examples:
      nurture prospects export --out list.xlsx
      nurture prospects export --encoding cp932 --temperature hot --out hot.csv
    """
    if fmt is None:
        suffix = Path(out).suffix.lower() if out and out != "-" else ""
        if suffix not in ("", ".csv", ".txt", ".xlsx"):
            # A CSV in list.xls or list.pdf (or .xlsx bytes in .xlsm) is a file Excel refuses to open.
            raise InputError(
                f"{out}: nurture writes .csv or .xlsx, not {suffix}",
                hint="name the file .csv or .xlsx, or say --format csv|xlsx",
            )
        fmt = "xlsx" if suffix == ".xlsx" else "csv"
    if as_json and not out:
        raise InputError("--json needs --out FILE (the CSV itself goes to stdout otherwise)")
    zone = app.config.cadence.time_zone
    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("exporting to {task.fields[name]}"),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json or not console.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("export", total=None, name=out or "stdout")
        summary = export_prospects(
            app.engine(),
            out,
            format=fmt,
            encoding=encoding.lower(),
            language=language or ("ja" if zone == "Asia/Tokyo" else "en"),
            time_zone=zone,
            stdout=sys.stdout.buffer if not out else None,
            progress=lambda n: progress.update(task, completed=n),
            **_filters(temperature, industry, rank, stage, owner, status, tag, stale_days),
        )
    if as_json:
        dump_json(summary.as_dict())
        return
    message = f"{summary.rows} prospect(s) exported to {summary.path} ({fmt}" + (
        f", {summary.encoding})" if summary.encoding else ")"
    )
    if summary.defused:
        message += f"; {summary.defused} cell(s) starting with = + - @ written as text"
    click.echo(message, err=not out)


@prospects.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, email: str, as_json: bool) -> None:
    """Show everything nurture knows about one prospect."""
    engine = app.engine()
    data = get_prospect(engine, email)
    with engine.connect() as conn:
        scoring = score.explain_prospect(conn, data["id"], score.current_rules(), clock.now())
    if as_json:
        dump_json({**data, "scoring": scoring})
        return
    zone = ZoneInfo(app.config.cadence.time_zone)
    if data.get("erased"):
        when = data["status_changed_at"].astimezone(zone).strftime("%Y-%m-%d") if data["status_changed_at"] else "?"
        click.echo(
            f"erased at the person's request on {when}: only the hash of the address is kept "
            "(on the suppression list, so no import brings them back)"
        )
    for key, value in data.items():
        if value in (None, "", {}, []) or key == "erased":
            continue
        if isinstance(value, datetime):
            value = value.astimezone(zone).strftime(f"%Y-%m-%d %H:%M ({zone.key})")
        if isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False)
        click.echo(f"{key:28} {value}")
    _show_scoring(scoring, zone)


def _show_scoring(scoring: dict, zone: ZoneInfo) -> None:
    """The score, its parts now and the explained history (newest first)."""
    now = scoring["now"]
    click.echo("")
    click.echo(
        f"score now                    {now['score']:.1f} = fit {now['fit_score']:.1f} + engagement "
        f"{now['engagement_score']:.1f} -> rank {now['rank']}, {now['temperature']}, {now['stage']}"
        f"  (rules {scoring['rules_version']}; temperature: {scoring['fields']['temperature']}, "
        f"stage: {scoring['fields']['stage']})"
    )
    for name, points in scoring["fit_parts"].items():
        click.echo(f"  fit  {name:40} {points:+.1f}")
    for kind, part in scoring["engagement_parts"].items():
        ignored = ", ".join(f"{n} {why}" for why, n in part["ignored"].items())
        click.echo(
            f"  engagement {kind:34} {part['points']:+.1f}  ({part['counted']} counted"
            + (f"; ignored: {ignored}" if ignored else "")
            + ")"
        )
    if scoring["history"]:
        click.echo("history")
    for h in scoring["history"]:
        when = h["at"].astimezone(zone).strftime("%Y-%m-%d %H:%M")
        click.echo(f"  {when} [{h['cause']}] {h['field']}: {h['explanation']}")


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
