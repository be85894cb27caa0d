"""``nurture handoffs [list] | ack | reject | notify`` and ``nurture digest``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nurture.cli.app import App, pass_app
from nurture.cli.output import dump_json
from nurture.core import clock
from nurture.core.errors import InputError
from nurture.notify import decide, list_handoffs, notify_due, run_digest
from nurture.notify.handoffs import REASONS, STATES


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=200)  # piped: do not wrap at 80 columns


def _short(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _local(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else "-"


F = TypeVar("F", bound=Callable[..., Any])

_FILTERS = [
    click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="Only this state (repeatable)."),
    click.option("--open", "only_open", is_flag=True, help="Only open handoffs (same as --state open)."),
    click.option("--owner", help='Only this owner (as written in the prospect list; "" for nobody\'s).'),
    click.option(
        "--reason", "reasons", multiple=True, type=click.Choice(REASONS), help="Only this reason (repeatable)."
    ),
    click.option("--prospect", "email", metavar="EMAIL", help="Only this prospect's handoffs."),
    click.option("--days", type=click.IntRange(min=1), help="Only handoffs made in the last N days."),
    click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1), help="At most this many."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON."),
]


def _filters(fn: F) -> F:
    for option in reversed(_FILTERS):
        fn = option(fn)
    return fn


@click.group("handoffs", invoke_without_command=True)
@_filters
@click.pass_context
def handoffs(ctx: click.Context, /, **filters: Any) -> None:
    """Prospects handed over to sales (rank A, stage SQL, an inquiry), newest first: state, the notice (sent,
    pending, retrying with its error) and sales' verdict. Without a command: the list (as `handoffs list`).

    \b
    nurture handoffs --open                          what sales has not looked at yet
    nurture handoffs ack EMAIL                       sales took it
    nurture handoffs reject EMAIL --reason "..."     sales declined, and why
    nurture handoffs notify                          send due notices now (cron without `nurture serve`)
    """
    if ctx.invoked_subcommand is None:
        app = ctx.find_object(App)
        assert app is not None
        _print_list(app, **filters)


@handoffs.command("list")
@_filters
@pass_app
def list_(app: App, /, **filters: Any) -> None:
    """List handoffs (the same as `nurture handoffs` with these options)."""
    _print_list(app, **filters)


def _print_list(
    app: App,
    states: tuple[str, ...],
    only_open: bool,
    owner: str | None,
    reasons: tuple[str, ...],
    email: str | None,
    days: int | None,
    limit: int,
    as_json: bool,
) -> None:
    if only_open:
        states = (*states, "open")
    since = clock.now() - timedelta(days=days) if days else None
    rows = list_handoffs(
        app.engine(), states=states, owner=owner, reasons=reasons, email=email, since=since, limit=limit
    )
    if as_json:
        dump_json(rows)
        return
    zone = ZoneInfo(app.config.cadence.time_zone)
    table = Table(box=box.SIMPLE_HEAD)
    for name in ("id", "made", "prospect", "owner", "reason", "rank/stage", "state", "notice", "verdict"):
        table.add_column(name)
    for r in rows:
        notice = r["notice"]
        if notice == "sent":
            notice = f"sent {_local(r['notified_at'], zone)}"
        elif notice == "retrying":
            errors = [_short(line) for line in r["notice_error"].splitlines() if not line.startswith("sent ")]
            notice = f"retry {_local(r['notice_due_at'], zone)} ({r['notice_attempts']}x)\n" + "\n".join(errors)
        if r["escalated_at"]:
            notice += f"\nescalated {_local(r['escalated_at'], zone)}"
        verdict = ""
        if r["decided_at"]:
            verdict = f"{r['decided_by'] or '?'} {_local(r['decided_at'], zone)}"
            if r["verdict_reason"]:
                verdict += f"\n{r['verdict_reason']}"
        elif r["state"] == "open":
            verdict = f"open {r['age_hours']} h"
        cells = [
            str(r["id"]),
            _local(r["created_at"], zone),
            f"{r['name'] or ''} {r['company'] or ''}\n{r['email']}".strip(),
            r["owner"] or "-",
            r["reason"],
            f"{r['rank']} / {r['stage']} ({r['score']})",
            r["state"],
            notice,
            verdict,
        ]
        table.add_row(*(escape(c) for c in cells))  # "[handoff] …" in an error is text, not rich markup
    console = _console()
    console.print(table)
    console.print(f"{len(rows)} handoff(s)")


@handoffs.command("ack")
@click.argument("email")
@click.option("--by", default="", help="Who acknowledges (default: your login name).")
@click.option("--note", default="", help="A note kept with the verdict.")
@pass_app
def ack(app: App, email: str, by: str, note: str) -> None:
    """Record that sales took over EMAIL's open handoff (stops its escalation)."""
    ids = decide(app.engine(), email, "acknowledged", by=by, reason=note, zone=app.config.cadence.time_zone)
    click.echo(f"acknowledged {email.strip().lower()} (handoff {', '.join(map(str, ids))})")


@handoffs.command("reject")
@click.argument("email")
@click.option("--reason", required=True, help='Why sales declined, e.g. "no budget until April" (required).')
@click.option("--by", default="", help="Who rejects (default: your login name).")
@pass_app
def reject(app: App, email: str, reason: str, by: str) -> None:
    """Record that sales declined EMAIL's open handoff, and why (the handoffs report measures the threshold)."""
    ids = decide(app.engine(), email, "rejected", by=by, reason=reason, zone=app.config.cadence.time_zone)
    click.echo(f"rejected {email.strip().lower()} (handoff {', '.join(map(str, ids))}): {reason.strip()}")


@handoffs.command("notify")
@click.option("--json", "as_json", is_flag=True, help="Print what the pass did as JSON.")
@pass_app
def notify(app: App, as_json: bool) -> None:
    """Send the due notices and escalations once (what `nurture serve` does every 15 s). For cron, every
    minute: `* * * * * cd /srv/nurture && nurture handoffs notify`. Safe to run beside a server."""
    # The pass logs each failure for `nurture serve`; here the summary below says it, once.
    logging.getLogger("nurture.notify").addHandler(logging.NullHandler())
    report = notify_due(app.engine(), app.config)
    if as_json:
        dump_json(report.as_dict())
    else:
        click.echo(
            f"{len(report.notified)} notice(s) sent, {len(report.escalated)} escalated, "
            f"{len(report.failed)} failed (retried later)"
        )
        for handoff_id, error in report.errors.items():
            click.echo(f"  handoff {handoff_id}: {error}", err=True)
    if report.failed:
        raise SystemExit(1)


@click.command("digest")
@click.option("--owner", help='Only this owner (as written in the prospect list; "" for nobody\'s prospects).')
@click.option("--dry-run", is_flag=True, help="Print the digests (text part) instead of mailing them.")
@click.option("--html", "html_dir", type=click.Path(file_okay=False), help="Also write each digest's HTML here.")
@click.option("--json", "as_json", is_flag=True, help="Print the digests' data as JSON (with --dry-run: send none).")
@pass_app
def digest(app: App, owner: str | None, dry_run: bool, html_dir: str | None, as_json: bool) -> None:
    """Mail each owner their weekly digest: open and new handoffs, prospects who moved up, overdue next actions and
    prospects not contacted for [digest] no_contact_days. For cron, e.g. Mondays 08:00:
    `0 8 * * 1 cd /srv/nurture && nurture digest`."""
    if owner:
        _require_owner(app, owner)
    mails = run_digest(app.engine(), app.config, owner=owner, dry_run=dry_run, include_empty=owner is not None)
    if html_dir:
        from pathlib import Path

        folder = Path(html_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for m in mails:
            if m.rendered is not None:
                name = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in (m.owner or "no-owner"))
                (folder / f"digest-{name}.html").write_text(m.rendered.html, encoding="utf-8")
    if as_json:
        dump_json([m.as_dict() for m in mails])
    else:
        for m in mails:
            if m.status == "dry-run" and m.rendered is not None:
                click.echo(f"To: {m.address or '(no address)'}\nSubject: {m.rendered.subject}\n")
                click.echo(m.rendered.text)
                click.echo("-" * 72)
            elif m.status == "empty":
                click.echo(f"{m.owner or '(no owner)'}: nothing to report, no mail")
            else:
                click.echo(f"{m.owner or '(no owner)'}: {m.status}: {m.detail}", err=m.status == "failed")
    failed = [m for m in mails if m.status == "failed"]
    if failed:
        raise SystemExit(1)


def _require_owner(app: App, owner: str) -> None:
    """A typo in --owner would print (or mail) an empty digest to nobody: refuse an owner that no prospect or
    handoff has and that ``[handoff] owners`` does not map, naming the owners there are."""
    from sqlalchemy import select, union

    from nurture.store.models import Handoff, Prospect

    if owner in app.config.handoff.owners:
        return
    with app.engine().connect() as conn:
        known = set(conn.execute(union(select(Prospect.owner), select(Handoff.owner))).scalars())
    if owner in known:
        return
    names = sorted(n for n in known | set(app.config.handoff.owners) if n)
    raise InputError(
        f'no prospect or handoff has the owner "{owner}"',
        hint=f"owners: {', '.join(names[:20])}" if names else "no prospect has an owner yet",
    )


COMMANDS = [handoffs, digest]
