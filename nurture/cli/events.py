"""``nurture events import|list``: offline events (seminars, downloads, replies, meetings) and the event log."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click

from nurture import track as store
from nurture.cli.app import App, pass_app
from nurture.cli.output import dump_json, import_verdict
from nurture.people import find_prospect, import_offline_events


@click.group("events")
def events() -> None:
    """Record offline events and look at what happened to prospects."""


@events.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--encoding", help="Force the text encoding of a CSV (utf-8, utf-8-sig, cp932). Default: detected.")
@click.option("--sheet", help="The worksheet of an .xlsx file (default: the first).")
@click.option("--skip-invalid", is_flag=True, help="Record the good rows and list the bad ones.")
@click.option("--dry-run", is_flag=True, help="Check and count, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def import_(
    app: App, file: str, encoding: str | None, sheet: str | None, skip_invalid: bool, dry_run: bool, as_json: bool
) -> None:
    """Import offline events from a CSV (UTF-8 / Shift_JIS) or .xlsx file.

    \b
    Columns (English or Japanese headers):
      email / メールアドレス   the prospect (must already be imported)
      type / 種別             セミナー参加 (seminar_attended), 資料ダウンロード (document_downloaded),
                              返信 (replied), 面談 / 商談 / 訪問 (met)
      date / 日付             2026/11/20 or 2026/11/20 14:00 (local time of [cadence] time_zone)
      title / タイトル        optional: seminar or document name
      note / メモ             optional
    Other columns are kept with the event. If any row is invalid nothing is recorded, unless
    --skip-invalid. Importing the same file again records nothing twice.
    """
    engine = app.engine()
    summary = import_offline_events(
        engine,
        file,
        time_zone=app.config.cadence.time_zone,
        encoding=encoding,
        sheet=sheet,
        skip_invalid=skip_invalid,
        dry_run=dry_run,
    )
    import_verdict(
        file, summary.rejected, skip_invalid=skip_invalid, as_json=as_json, summary=summary.as_dict(), verb="record"
    )
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(summary.by_type.items())) or "none"
    click.echo(
        f"{file} ({summary.encoding or 'xlsx'}): "
        f"{'would record' if dry_run else 'recorded'} {summary.recorded}, "
        f"already recorded {summary.already}, rejected {len(summary.rejected)} ({kinds})"
        + (" — dry run, nothing written" if dry_run else "")
    )


@events.command("list")
@click.option("--prospect", "email", metavar="EMAIL", help="Only this prospect's events.")
@click.option("--type", "types", multiple=True, type=click.Choice(store.TYPES), help="Event type (repeatable).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app: App, email: str | None, types: tuple[str, ...], limit: int, as_json: bool) -> None:
    """The newest events first, with their human/machine label and the rule that set it."""
    engine = app.engine()
    prospect_id = find_prospect(engine, email).id if email else None
    rows = store.list_events(engine, prospect_id=prospect_id, types=types, limit=limit)
    if as_json:
        dump_json(rows)
        return
    if not rows:
        click.echo("no events")
        return
    zone = ZoneInfo(app.config.cadence.time_zone)
    relabelled = False
    for r in rows:
        relabelled = relabelled or bool(r["relabeled_at"] and r["type"] in ("opened", "clicked"))
        what = r["data"].get("title") or r["url"] or ""
        label = f"{r['label']} {r['confidence']:.2f} {r['rule']}" if r["type"] in ("opened", "clicked") else ""
        if label and r["relabeled_at"]:
            label += "*"  # relabelled after it was stored (a source caught later); the footnote says so
        click.echo(
            f"{_local(r['occurred_at'], zone)}  {r['type']:<19} {r['email'] or '-':<30} {r['campaign']:<16} "
            f"{label:<32} {what}".rstrip()
        )
    if relabelled:
        click.echo("* relabelled after it was stored: its source was caught as a machine (honeypot, burst, gateway)")
    click.echo(f"times in {zone.key} ([cadence] time_zone)")


def _local(value: str, zone: ZoneInfo) -> str:
    """An ISO time from the store as ``YYYY-MM-DD HH:MM`` in ``zone`` (stored times are UTC)."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return value[:16]
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")


COMMANDS = [events]
