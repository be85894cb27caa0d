"""``nurture send`` and ``nurture resume``."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from nurture.cli.app import App, pass_app
from nurture.cli.output import dump_json
from nurture.deliver import engine as sending
from nurture.plan.campaigns import load_campaigns


def _print_counter(title: str, counter, style: str) -> None:
    total = sum(counter.values())
    if not total:
        return
    click.echo(click.style(f"{title}: {total}", fg=style))
    for reason, n in counter.most_common():
        click.echo(f"  {n:>7,}  {reason}")


def _failing_check(config, campaigns) -> dict[str, str]:
    """Campaigns that `nurture check` would fail (missing 特定電子メール法 footer, sales pitch, broken
    template), with the reason. They are not sent: compliance is checked before anything leaves."""
    from nurture.checks.campaign import CampaignReport, check_campaign

    blocked = {}
    for campaign in campaigns:
        if campaign.status != "active":
            continue
        report = CampaignReport(campaign.name, str(campaign.path))
        check_campaign(config, campaign, report)
        if report.errors:
            first = next(f.message for f in report.findings if f.severity == "error")
            blocked[campaign.name] = (f"`nurture check {campaign.name}` finds {report.errors} error(s), "
                                      f"first: {first}")
    return blocked


@click.command("send")
@click.argument("campaigns", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Deliver nothing; list who would get what, and who not and why.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Send at most N messages in this run.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def send(app: App, campaigns: tuple[str, ...], dry_run: bool, limit: int | None, as_json: bool) -> None:
    """Send the mails that are due now, for all active campaigns (or the ones named).

    \b
    Each prospect gets at most one nurture mail per [cadence] min_gap_days across all campaigns, the
    higher-priority campaign first; the rest waits for a later run (deferred, never dropped). Quiet hours,
    weekends, Japanese holidays and company holidays are respected in the prospect's time zone. Temporary
    provider errors are retried on later runs; nothing is ever sent twice. Safe to run from cron, and
    in several processes at once.
    """
    config = app.config
    engine = app.engine()
    chosen = load_campaigns(config, list(campaigns) or None)
    blocked = _failing_check(config, chosen)
    chosen = [c for c in chosen if c.name not in blocked]
    console = Console(stderr=True)
    show = not as_json and console.is_terminal
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=not show, transient=True) as progress:
        plan_task = progress.add_task("planning", total=None)
        # Sending starts while planning goes on: its total is what was queued before this run (retries now
        # due) plus what this run has planned so far, and grows with each planned batch.
        earlier = 0 if dry_run else sending.pending_count(engine, [c.name for c in chosen])
        send_task = progress.add_task("sending", total=earlier or None, visible=not dry_run)

        def planned(campaign: str, n: int, planned_so_far: int) -> None:
            progress.update(plan_task, advance=n, description=f"planning {campaign}")
            total = earlier + planned_so_far
            progress.update(send_task, total=(min(limit, total) if limit else total) or None)

        def outcome(o: sending.Outcome) -> None:
            progress.update(send_task, advance=1, description=f"sending ({o.state}: {o.email})")

        report = sending.send(engine, config, chosen, dry_run=dry_run, limit=limit,
                              keep_decisions=dry_run, keep_outcomes=as_json,
                              plan_progress=planned, on_outcome=outcome)
    if as_json:
        dump_json(report.as_dict() | {"blocked_campaigns": blocked})
        sys.exit(1 if report.failed or report.paused or blocked else 0)
    if dry_run:
        for d in report.decisions:
            if d.outcome == "send":
                click.echo(f"would send  {d.campaign:20} {d.email:36} item {d.item_key}")
        for d in report.decisions:
            if d.outcome != "send":
                click.echo(f"{d.outcome:10}  {d.campaign:20} {d.email:36} {d.reason}")
        click.echo(f"dry run: {report.planned} would be sent now; nothing was delivered")
    else:
        click.echo(click.style(f"sent: {report.sent}", fg="green", bold=True)
                   + f"  (via {config.delivery.sender}"
                   + (f" into {config.resolve(config.outbox.path)}" if config.delivery.sender == "outbox" else "")
                   + ")")
    _print_counter("deferred", report.deferred, "yellow")
    _print_counter("skipped", report.skipped, "white")
    _print_counter("failed", report.failed, "red")
    _print_counter("unknown (awaiting provider confirmation)", report.unknown, "magenta")
    for note in report.notes:
        click.echo(f"note: {note}")
    for name, reason in report.paused.items():
        click.echo(click.style(f"campaign {name} is paused: {reason}", fg="red"), err=True)
    for name, reason in blocked.items():
        click.echo(click.style(f"campaign {name} was not sent: {reason}", fg="red"), err=True)
    if report.failed or report.paused or blocked:
        sys.exit(1)


@click.command("resume")
@click.argument("campaign")
@pass_app
def resume(app: App, campaign: str) -> None:
    """Lift the pause that too many delivery failures put on CAMPAIGN."""
    if sending.resume(app.engine(), campaign):
        click.echo(f"campaign {campaign} resumed; the next `nurture send` continues it")
    else:
        click.echo(f"campaign {campaign} was not paused")


COMMANDS = [send, resume]
