"""``nurture check`` and ``nurture preview``: print what :mod:`nurture.checks.campaign` finds, and one mail.

The check itself (and its placeholder-signed previews) lives in :mod:`nurture.checks.campaign`; it is imported
inside the commands because it pulls in the renderer (MJML, Jinja) and the checks, which every other ``nurture``
command would otherwise pay for at start-up (``python -X importtime``: ~25 ms over what ``nurture --help`` loads
today, 60-80 ms when nothing else loads the renderer).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy.exc import SQLAlchemyError

from nurture.cli.app import App, pass_app
from nurture.core import clock
from nurture.core.errors import NotFound, NurtureError
from nurture.people import find_prospect
from nurture.plan.campaigns import display_path

if TYPE_CHECKING:
    from nurture.checks.campaign import CampaignReport
    from nurture.plan.schedule import ScheduleWarning


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _print_reports(reports: list[CampaignReport], note: str) -> None:
    for report in reports:
        counts = _count(report.items, "item") if report.loaded else "not loaded"
        if report.status == "ok":
            click.secho(f"ok        {report.name} ({report.file}, {counts})", fg="green")
        else:
            label = f"{_count(report.errors, 'error')}, {_count(report.warnings, 'warning')}"
            colour = "red" if report.errors else "yellow"
            click.secho(f"{report.status:<9} {report.name} ({report.file}, {counts}): {label}", fg=colour)
        for f in report.findings:
            click.echo(f"  {f.severity:<7} " + f.message.replace("\n", "\n          "))
    total_errors = sum(r.errors for r in reports)
    total_warnings = sum(r.warnings for r in reports)
    bad = sum(r.status == "errors" for r in reports)
    click.echo(
        f"\n{_count(len(reports), 'campaign')} checked: {len(reports) - bad} without errors, {bad} with "
        f"errors ({_count(total_errors, 'error')}, {_count(total_warnings, 'warning')})"
    )
    click.echo(f"note: {note}")


@click.command("check")
@click.argument("campaigns", nargs=-1, metavar="[CAMPAIGN]...")
@click.option(
    "--prospect",
    "email",
    metavar="EMAIL",
    help="Render for this prospect from the database instead of the built-in sample prospect.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--explain",
    "explain",
    metavar="[CAMPAIGN/]ITEM",
    help="Show every content finding of one item (its key) with the rule or model evidence behind it, "
    "and the reviewed exceptions ([[allow]]) that let findings through.",
)
@pass_app
def check(app: App, campaigns: tuple[str, ...], email: str | None, as_json: bool, explain: str | None) -> None:
    """Check campaign files, templates and content (all campaigns by default).

    \b
    For each campaign: the TOML file and its segment, every template compiles, every item renders for a
    sample prospect in the campaign's language, the footer shows what 特定電子メール法 and CAN-SPAM require,
    and the text is information, not a sales pitch. With a real sender (smtp, sendgrid) also the setup:
    no example identity, a public https base_url, a real secret, DKIM aligned with From (the preflight
    `nurture send` refuses on). Needs no database (unless --prospect) and no tracking secret.
    Exit status 1 if any error is found. Also warns (without failing) when the runs declared in
    [schedule] cron never reach a campaign's send window in a zone its prospects live in, or when prospects
    without a time zone have addresses in a country hours away from the workspace zone.
    """
    from nurture.checks import campaign as checking  # start-up time: MJML and Jinja load only for a check
    from nurture.checks import preflight

    config = app.config
    prospect = find_prospect(app.engine(), email) if email else None
    # A real sender: the setup itself must be fit to send (the same check `nurture send` refuses on).
    setup = preflight.preflight_problems(config) if preflight.is_real_sender(config) else []
    setup_severity = "error" if config.delivery.preflight else "warning"
    reports = checking.run_check(config, campaigns, prospect)
    if not reports:
        raise NotFound(
            f"no campaign files (*.toml) in {display_path(config.campaigns_dir)}",
            hint="see campaigns/README.md for the format, or run `nurture demo`",
        )
    scheduling = _schedule_warnings(app, campaigns)
    if explain:
        _explain(reports, explain, as_json)
    elif as_json:
        click.echo(
            json.dumps(
                {
                    "schedule_warnings": [w.as_dict() for w in scheduling],
                    "ok": not any(r.errors for r in reports) and not (setup and setup_severity == "error"),
                    "errors": sum(r.errors for r in reports),
                    "warnings": sum(r.warnings for r in reports),
                    "preview_secret": checking.uses_preview_secret(config),
                    "note": checking.preview_note(config),
                    "setup": [
                        {"severity": setup_severity, "key": p.key, "message": p.message, "hint": p.hint} for p in setup
                    ],
                    "campaigns": [r.as_dict() for r in reports],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        if setup:
            click.secho(
                f"{setup_severity:<9} setup ({config.source}, sender {config.delivery.sender}): "
                f"{_count(len(setup), 'problem')} before real mail may leave",
                fg="red" if setup_severity == "error" else "yellow",
            )
            for p in setup:
                click.echo(f"  {setup_severity:<7} {p}")
        _print_reports(reports, checking.preview_note(config))
        for w in scheduling:
            click.secho(f"warning: {w.message}", fg="yellow")
    if any(r.errors for r in reports) or (setup and setup_severity == "error"):
        raise click.exceptions.Exit(1)


def _schedule_warnings(app: App, names: tuple[str, ...]) -> list[ScheduleWarning]:
    """Send windows the declared [schedule] never reaches (nurture.plan.schedule): counted per zone from the
    database when there is one, else judged for the workspace's and each campaign's zone. Never fails the check."""
    from nurture.plan import schedule
    from nurture.plan.campaigns import load_each

    config = app.config
    chosen = [
        c for _, c, _ in load_each(config) if c is not None and c.status == "active" and (not names or c.name in names)
    ]
    now = clock.now()
    url = config.database_url
    has_db = not url.startswith("sqlite:///") or Path(url[len("sqlite:///") :]).exists()
    if has_db:
        try:
            engine = app.engine()
            with engine.connect() as conn:
                return schedule.schedule_warnings(conn, chosen, config, now)
        except (NurtureError, SQLAlchemyError):
            pass  # no database yet (or not reachable): judge by the config alone
    return schedule.config_window_warnings(config, chosen, now)


def _explain(reports: list[CampaignReport], ref: str, as_json: bool) -> None:
    """Print the content findings of item ``ref`` (``KEY`` or ``CAMPAIGN/KEY``) with their evidence."""
    campaign_name, _, key = ref.rpartition("/")
    chosen = [r for r in reports if not campaign_name or campaign_name in (r.name, Path(r.file).stem)]
    findings = [(r, f) for r in chosen for f in r.findings if f.item == key]
    if not findings and not any(key in _item_keys(r) for r in chosen):
        keys = sorted({f"{r.name}/{k}" for r in chosen for k in _item_keys(r)})
        raise NotFound(
            f'no item "{ref}" in the checked campaigns', hint=f"items with findings: {', '.join(keys) or 'none'}"
        )
    content_findings = [(r, f) for r, f in findings if f.kind == "content"]
    if as_json:
        click.echo(
            json.dumps(
                {"item": ref, "findings": [dataclasses.asdict(f) | {"campaign": r.name} for r, f in findings]},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    for report, f in findings:
        if f.kind != "content":
            click.echo(f"{f.severity:<8}{f.kind}: {f.message}")
            continue
        colour = {"error": "red", "warning": "yellow"}.get(f.severity, "cyan")
        click.secho(f'{f.severity:<8}{report.name}/{f.item} {f.where}: "{f.phrase}"', fg=colour)
        click.echo(
            f"        rule: {f.rule} ({f.category})" + (f", model p={f.score:.2f}" if f.score is not None else "")
        )
        click.echo(f"        why: {f.why}")
        if f.evidence:
            click.echo("        evidence: " + ", ".join(f.evidence))
        if f.allowed:
            click.echo(f"        allowed by the campaign file: {f.allowed}")
    errors = sum(f.severity == "error" for _, f in content_findings)
    allowed = sum(f.severity == "allowed" for _, f in content_findings)
    if not content_findings:
        click.echo(f"{ref}: no content findings (the item reads as information)")
    click.echo(f"\n{ref}: {_count(errors, 'content error')}, {allowed} allowed")


def _item_keys(report: CampaignReport) -> set[str]:
    return set(report.item_keys)


# --------------------------------------------------------------------------------------------- preview


@click.command("preview")
@click.argument("campaign_name", metavar="CAMPAIGN")
@click.option(
    "--item",
    "item_ref",
    metavar="N|KEY",
    default="1",
    show_default=True,
    help="Which content item: its position (1 = first) or its key.",
)
@click.option(
    "--prospect",
    "email",
    metavar="EMAIL",
    help="Render for this prospect from the database instead of the built-in sample prospect.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.html",
    help="Where to write the HTML (default: preview-CAMPAIGN-ITEM.html in the working directory).",
)
@pass_app
def preview(app: App, campaign_name: str, item_ref: str, email: str | None, out: Path | None) -> None:
    """Render one mail of CAMPAIGN: write the HTML to a file, print the subject and the text part.

    Open the file in a browser to see the newsletter as a reader would. Uses the built-in sample prospect
    in the campaign's language unless --prospect names one from the database.
    """
    from nurture.checks import campaign as checking  # start-up time: MJML and Jinja load only for a preview

    config = app.config
    _path, campaign, error = checking.selected_campaigns(config, (campaign_name,))[0]
    if campaign is None:
        assert error is not None
        raise error
    item = campaign.item(item_ref)
    prospect = find_prospect(app.engine(), email) if email else checking.sample_prospect(campaign, item)
    rendered = checking.render_item(config, campaign, item, prospect)
    target = out or Path.cwd() / f"preview-{campaign.name}-{item.key}.html"
    try:
        target.write_text(rendered.html, encoding="utf-8")
    except OSError as exc:
        raise NurtureError(f"cannot write {target}: {exc.strerror}") from None
    click.echo(f"wrote {display_path(target.resolve())}")
    click.echo(f"to:      {prospect.name} <{prospect.email}>" + (" (sample prospect)" if not email else ""))
    click.echo(f"subject: {rendered.subject}")
    click.echo("-" * 72)
    click.echo(rendered.text.rstrip())
    click.echo("-" * 72)
    click.echo(f"note: {checking.preview_note(config)}")


COMMANDS = [check, preview]
