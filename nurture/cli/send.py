"""``nurture send`` and ``nurture resume``."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from nurture import deliver
from nurture.cli.app import App, pass_app
from nurture.cli.output import dump_json
from nurture.core import clock
from nurture.core.config import Config
from nurture.core.errors import ConfigError, SenderConfigError
from nurture.plan.campaigns import Campaign, display_path, load_campaigns
from nurture.plan.schedule import ScheduleWarning, schedule_warnings
from nurture.plan.silence import SilentProspect, silent_prospects
from nurture.store.states import PlanOutcome

log = logging.getLogger("nurture.send")


def _print_counter(title: str, counter: Counter[str], style: str) -> None:
    total = sum(counter.values())
    if not total:
        return
    click.echo(click.style(f"{title}: {total}", fg=style))
    for reason, n in counter.most_common():
        click.echo(f"  {n:>7,}  {reason}")


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
    in several processes at once. Campaigns that `nurture check` fails are not sent; a campaign file that
    does not load is skipped with its file:line problems; the others are sent.

    \b
    Exit codes:
      0  everything due was handled
      1  some mails failed (refused, or could not be built), or a campaign is paused
      2  configuration error (nurture.toml, no campaign at all, the sender cannot send): nothing more sent
      3  a campaign was skipped: its file does not load, or `nurture check` fails it; the others were sent

    \b
    --dry-run also accounts for everyone else: the mailable prospects no campaign selects (and why), the
    silent ones (content exhausted, send window never reached by [schedule], overdue with the reason), and
    warnings about the schedule; with --json as rows.
    """
    config = app.config
    broken: list[str] = []
    chosen = load_campaigns(config, list(campaigns) or None, broken=broken)
    if not chosen and not broken:
        folder = display_path(config.campaigns_dir)
        raise ConfigError(
            f"no campaign to send: {folder}/ has no campaign file (*.toml)",
            hint="`nurture init --samples` copies the sample campaigns and templates; the format is in "
            "campaigns/README.md",
        )
    engine = app.engine()
    console = Console(stderr=True)
    show = not as_json and console.is_terminal
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not show,
            transient=True,
        ) as progress:
            plan_task = progress.add_task("planning", total=None)
            # Sending starts while planning goes on: its total is what was queued before this run (retries now
            # due) plus what this run has planned so far, and grows with each planned batch.
            earlier = 0 if dry_run else deliver.pending_count(engine, [c.name for c in chosen])
            send_task = progress.add_task("sending", total=earlier or None, visible=not dry_run)

            def planned(campaign: str, n: int, planned_so_far: int) -> None:
                progress.update(plan_task, advance=n, description=f"planning {campaign}")
                total = earlier + planned_so_far
                progress.update(send_task, total=(min(limit, total) if limit else total) or None)

            def outcome(o: deliver.Outcome) -> None:
                progress.update(send_task, advance=1, description=f"sending ({o.state}: {o.email})")

            report = deliver.send(
                engine,
                config,
                chosen,
                dry_run=dry_run,
                limit=limit,
                keep_decisions=dry_run,
                keep_outcomes=as_json,
                plan_progress=planned,
                on_outcome=outcome,
            )
        report.broken_files.extend(broken)
    except SenderConfigError as exc:  # the run stopped at once: say why, and that nothing was lost
        click.echo(
            click.style(f"error: the {config.delivery.sender} sender cannot send: {exc.message}", fg="red"), err=True
        )
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        click.echo("  the run stopped: the mails not sent stay pending for the next `nurture send`", err=True)
        log.error("send stopped: the %s sender cannot send: %s", config.delivery.sender, exc.message)
        sys.exit(exc.exit_code)
    # One line a run for the log collector (--log-format json): what cron or a systemd timer did, in numbers.
    log.info(
        "send finished",
        extra={
            "dry_run": dry_run,
            "planned": report.planned,
            "sent": report.sent,
            "deferred": sum(report.deferred.values()),
            "skipped": sum(report.skipped.values()),
            "failed": sum(report.failed.values()),
            "unknown": sum(report.unknown.values()),
            "paused_campaigns": sorted(report.paused),
            "blocked_campaigns": sorted(report.blocked),
        },
    )
    explained = _explain_everyone(engine, config, chosen) if dry_run else None
    if as_json:
        data = report.as_dict()
        if explained is not None:
            data.update(explained.as_dict())
        dump_json(data)
        sys.exit(_exit_code(report))
    if dry_run:
        for d in report.decisions:
            if d.outcome == PlanOutcome.SEND:
                click.echo(f"would send  {d.campaign:20} {d.email:36} item {d.item_key}")
        for d in report.decisions:
            if d.outcome != PlanOutcome.SEND:
                click.echo(f"{d.outcome:10}  {d.campaign:20} {d.email:36} {d.reason}")
        click.echo(f"dry run: {report.planned} would be sent now; nothing was delivered")
    else:
        click.echo(
            click.style(f"sent: {report.sent}", fg="green", bold=True)
            + f"  (via {config.delivery.sender}"
            + (f" into {config.resolve(config.outbox.path)}" if config.delivery.sender == "outbox" else "")
            + ")"
        )
    _print_counter("deferred", report.deferred, "yellow")
    _print_counter("skipped", report.skipped, "white")
    _print_counter("failed", report.failed, "red")
    _print_counter("unknown (awaiting provider confirmation)", report.unknown, "magenta")
    if explained is not None:
        explained.print()
    for note in report.notes:
        click.echo(f"note: {note}")
    for name, reason in report.paused.items():
        click.echo(click.style(f"campaign {name} is paused: {reason}", fg="red"), err=True)
    for name, reason in report.blocked.items():
        click.echo(click.style(f"campaign {name} was not sent: {reason}", fg="red"), err=True)
    for line in report.broken_files:
        click.echo(click.style(f"skipped campaign file: {line}", fg="red"), err=True)
    if report.broken_files:
        click.echo("  fix the file (`nurture check` lists every problem); the other campaigns were sent", err=True)
    sys.exit(_exit_code(report))


#: ``nurture send`` exit codes (documented in its --help and the README).
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_SKIPPED = 0, 1, 2, 3


def _exit_code(report: deliver.Report) -> int:
    """3 when a campaign or campaign file was skipped (the others were sent), else 1 when mails failed or a
    campaign is paused, else 0. (2 is a configuration error before anything was sent.)"""
    if report.skipped_campaigns:
        return EXIT_SKIPPED
    return EXIT_FAILED if report.failed or report.paused else EXIT_OK


#: How many silent prospects the text output names (``--json`` lists all).
SHOW_SILENT = 50


@dataclass
class Explained:
    """The dry run's account of everyone it does not mail: prospects no campaign selects, silent prospects
    (nurture.plan.silence) and schedule warnings (nurture.plan.schedule)."""

    unselected: list[SilentProspect]
    silent: list[SilentProspect]
    warnings: list[ScheduleWarning]

    def as_dict(self) -> dict[str, object]:
        return {
            "unselected": [s.as_dict() for s in self.unselected],
            "unselected_counts": dict(Counter(s.category for s in self.unselected).most_common()),
            "silent": [s.as_dict() for s in self.silent],
            "silent_counts": dict(Counter(s.category for s in self.silent).most_common()),
            "schedule_warnings": [w.as_dict() for w in self.warnings],
        }

    def print(self) -> None:
        _print_counter("not selected by any campaign", Counter(s.category for s in self.unselected), "white")
        if self.silent:
            _print_counter(
                "silent (mailable, selected, but hearing nothing)", Counter(s.category for s in self.silent), "yellow"
            )
            for s in self.silent[:SHOW_SILENT]:
                click.echo(f"  {s.email:36} {s.kind:10} {s.reason}")
            if len(self.silent) > SHOW_SILENT:
                click.echo(f"  ... and {len(self.silent) - SHOW_SILENT:,} more (--json lists them all)")
        for w in self.warnings:
            click.echo(click.style(f"warning: {w.message}", fg="yellow"))


def _explain_everyone(engine: Engine, config: Config, campaigns: list[Campaign]) -> Explained:
    campaigns = [c for c in campaigns if c.channel == "email"]  # post has its own dry run (nurture postal run)
    now = clock.now()
    with engine.connect() as conn:
        found = list(silent_prospects(conn, campaigns, config, now))
        warnings = schedule_warnings(conn, campaigns, config, now)
    return Explained(
        [s for s in found if s.kind == "unselected"], [s for s in found if s.kind != "unselected"], warnings
    )


@click.command("resume")
@click.argument("campaign")
@pass_app
def resume(app: App, campaign: str) -> None:
    """Lift the pause that too many delivery failures put on CAMPAIGN."""
    if deliver.resume(app.engine(), campaign):
        click.echo(f"campaign {campaign} resumed; the next `nurture send` continues it")
    else:
        click.echo(f"campaign {campaign} was not paused")


COMMANDS = [send, resume]
