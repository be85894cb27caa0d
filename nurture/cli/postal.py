"""``nurture postal``: the quarterly postal newsletter — print a batch, mark it mailed, record returned mail.

The work lives in :mod:`nurture.postal`; it is imported inside the commands (WeasyPrint and the renderer are
heavy, and only these commands need them).
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import click

from nurture.cli.app import App, pass_app
from nurture.cli.output import dump_json
from nurture.core.errors import InputError, NotFound
from nurture.plan.campaigns import load_campaigns


@click.group("postal")
def postal() -> None:
    """The postal newsletter (campaigns with channel = "postal"), about every three months.

    \b
    Every quarter:
      nurture postal run --dry-run          who gets the next issue, who not and why
      nurture postal run --out print/       labels (PDF), vendor CSV, the issue (PDF)
      nurture postal mailed BATCH           after posting: counts as a touch (e-mail waits)
      nurture postal returned FILE          returned mail (宛先不明): no more post there
      nurture postal stop EMAIL             someone asked for no post (--undo: welcome again)
    """


@postal.command("run")
@click.argument("campaigns", nargs=-1)
@click.option(
    "--out",
    "out",
    default="postal",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the batch's files (a batch-<id> folder is made inside).",
)
@click.option("--dry-run", is_flag=True, help="List who would get the issue and who not, and why; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with --dry-run: every prospect and reason).")
@pass_app
def run(app: App, campaigns: tuple[str, ...], out: str, dry_run: bool, as_json: bool) -> None:
    """Print the next issue of the postal campaigns (all, or those named) for everyone due.

    Writes, per campaign, OUT/batch-<id>/labels.pdf (A4 label sheets, [postal] label_layout),
    recipients.csv (for a print-and-mail vendor, [postal] csv_encoding) and issue-<item>.pdf (A4). The batch is
    recorded; its people are not chosen again until it is marked mailed (nurture postal mailed).
    """
    from nurture.postal import batches

    config = app.config
    engine = app.engine()
    chosen = [c for c in load_campaigns(config, list(campaigns) or None) if c.channel == "postal"]
    if campaigns:
        email = set(campaigns) - {c.name for c in chosen}
        if email:
            raise InputError(f"not a postal campaign: {', '.join(sorted(email))}", hint="nurture send sends e-mail")
    if not chosen:
        raise NotFound(
            "no postal campaign",
            hint='add channel = "postal" to a campaign file (see campaigns/postal-quarterly.toml)',
        )
    results = [batches.run(engine, config, c, Path(out), dry_run=dry_run) for c in chosen]
    if as_json:
        dump_json([r.as_dict() for r in results])
        return
    for r in results:
        verb = "would print" if dry_run else "printed"
        where = f" -> {r.out_dir}" if r.out_dir else ""
        click.echo(f"{r.campaign}: {verb} {len(r.due)} issue(s){where}")
        if dry_run:
            for d in r.due:
                click.echo(f"  due      {d.email:<32} {d.item.key if d.item else ''}")
        for reason, n in Counter(d.reason for d in r.not_due).most_common():
            click.echo(f"  not due  {n:>5}  {reason}")
        for f in r.files:
            click.echo(f"  wrote    {f}")


@postal.command("mailed")
@click.argument("batch", type=int)
@click.option("--date", "on", type=click.DateTime(formats=["%Y-%m-%d"]), help="Posting date (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def mailed(app: App, batch: int, on: object, as_json: bool) -> None:
    """Mark batch BATCH as posted: each recipient gets a postal touch (e-mail keeps [cadence] min_gap_days away
    from it) and a postal_mailed event. Safe to run twice."""
    from nurture.postal import batches

    day = on.date() if on is not None and hasattr(on, "date") else None
    result = batches.mark_mailed(app.engine(), app.config, batch, day if isinstance(day, date) else None)
    if as_json:
        dump_json(result)
        return
    click.echo(f"batch {result['batch']}: {result['recipients']} recipient(s) mailed on {result['mailed_on']}")


@postal.command("returned")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Match the rows and report; record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def returned(app: App, file: str, dry_run: bool, as_json: bool) -> None:
    """Record returned mail (宛先不明) from FILE: a 管理番号/code column as printed on the labels and in the
    vendor CSV, an e-mail column, or one code per line. Post stops for those addresses (e-mail does not).
    Rows that match nothing are listed with their row number; the others are recorded, and the exit code is 1."""
    from nurture.postal import batches

    result = batches.record_returns(app.engine(), Path(file), dry_run=dry_run)
    if as_json:
        dump_json(result)
    else:
        verb = "would record" if dry_run else "recorded"
        click.echo(f"{file}: {result['matched']} returned item(s) matched, {verb} {result['recorded']}")
        for u in result["unknown"]:
            click.echo(f"{file}: row {u['row']}: {u['value']!r} matches no printed label", err=True)
    if result["unknown"]:
        raise SystemExit(1)


@postal.command("stop")
@click.argument("emails", nargs=-1, required=True)
@click.option("--undo", is_flag=True, help="Post is welcome again (also clears a returned-mail mark).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def stop(app: App, emails: tuple[str, ...], undo: bool, as_json: bool) -> None:
    """No more post to these people (郵送停止), e.g. after a phone call; e-mail is not affected
    (`nurture suppress` stops e-mail). An import column 郵送不要 does the same for a whole list."""
    from nurture.postal import batches

    result = batches.set_post_wanted(app.engine(), list(emails), wanted=undo)
    if as_json:
        dump_json(result)
    else:
        verb = "post welcome again for" if undo else "no more post to"
        for email in result["changed"]:
            click.echo(f"{verb} {email}")
        for email in result["unknown"]:
            click.echo(f"error: {email}: no such prospect", err=True)
    if result["unknown"]:
        raise SystemExit(1)


@postal.command("batches")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_batches(app: App, as_json: bool) -> None:
    """The printed batches, newest first: when, how many, mailed or not, returned."""
    from nurture.postal import batches

    rows = batches.list_batches(app.engine())
    if as_json:
        dump_json(rows)
        return
    if not rows:
        click.echo("no postal batches yet")
    for b in rows:
        mailed_on = b["mailed_on"] or "not mailed yet"
        click.echo(
            f"{b['batch']:>5}  {b['campaign']:<24} printed {b['created_at'][:10]}  {mailed_on:<14} "
            f"{b['recipients']:>6} recipient(s)  {b['returned']} returned  {b['out_dir']}"
        )


COMMANDS = [postal]
