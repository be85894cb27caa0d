"""``nurture suppress | unsuppress | erase | suppressions import``: what an operator does to the list by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from nurture.cli.app import App, pass_app
from nurture.cli.output import dump_json
from nurture.core.errors import InputError
from nurture.people.operator import KINDS, Suppressed, erase, import_suppressions, read_addresses, suppress, unsuppress
from nurture.store.models import CONSENT_BASES

_KIND = click.Choice(tuple(KINDS))


def _report(summary: Suppressed, as_json: bool, what: str, extra: str = "") -> None:
    """Print a suppression summary; exit 1 if some addresses were not usable (the others were suppressed)."""
    if as_json:
        dump_json(summary.as_dict())
    else:
        for item in summary.addresses:
            click.echo(f"{item['email']}: {item['outcome']}")
        for bad in summary.invalid:
            where = f"row {bad['row']}" if "row" in bad else "argument"  # what: the file, or "suppress"
            click.echo(f'{what}: {where}: "{bad["value"]}" {bad["reason"]}: skipped', err=True)
        verb = "would be" if summary.dry_run else "were"
        click.echo(
            f"{summary.new} address(es) {verb} suppressed as {summary.kind} ({summary.prospects} of them prospects), "
            f"{summary.already} already suppressed"
            + (f", {summary.repeated} repeated" if summary.repeated else "")
            + (f", {len(summary.invalid)} not valid" if summary.invalid else "")
            + extra
            + (" — dry run, nothing written" if summary.dry_run else "")
        )
    if summary.invalid:
        sys.exit(1)


@click.command("suppress")
@click.argument("emails", nargs=-1)
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, path_type=str),
    help="Read the addresses from a file (one per line, or a CSV/XLSX with an address column).",
)
@click.option("--reason", default="", help="Why (kept with the event and the suppression), e.g. 'asked by phone'.")
@click.option("--kind", type=_KIND, default="unsubscribed", show_default=True, help="Record it as this.")
@click.option("--dry-run", is_flag=True, help="Check and count, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def suppress_(
    app: App, emails: tuple[str, ...], file: str | None, reason: str, kind: str, dry_run: bool, as_json: bool
) -> None:
    """Never mail these addresses again (an opt-out by phone, by letter, by a reply).

    \b
    A prospect is unsubscribed through an event (source operator, your --reason kept with it);
    an address that is no prospect is suppressed, so a later import brings it in unsubscribed.
    Invalid addresses are listed and skipped (exit 1); the others are still suppressed.
      nurture suppress taro@example.co.jp --reason "電話で配信停止の依頼"
      nurture suppress --file stop.txt --reason "returned reply cards"
    """
    rows = [(number, raw) for number, raw, _ in read_addresses(file)[0]] if file else []
    if not emails and not rows:
        raise InputError("no address given", hint="nurture suppress EMAIL... or nurture suppress --file FILE")
    summary = suppress(app.engine(), emails, reason=reason, kind=kind, dry_run=dry_run, rows=rows)
    _report(summary, as_json, file or "suppress")


@click.command("unsuppress")
@click.argument("email")
@click.option(
    "--consent",
    required=True,
    type=click.Choice([b for b in CONSENT_BASES if b != "unknown"]),
    help="The basis of the new consent.",
)
@click.option("--source", required=True, help="Where and when the person asked for mail again (kept with the consent).")
@click.option("--dry-run", is_flag=True, help="Check, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def unsuppress_(app: App, email: str, consent: str, source: str, dry_run: bool, as_json: bool) -> None:
    """Mail a suppressed person again, because they asked to; records their new consent.

    \b
      nurture unsuppress taro@example.co.jp --consent opt_in --source "signed up at the 2026-12 seminar"
    """
    result = unsuppress(app.engine(), email, consent=consent, source=source, dry_run=dry_run)
    if as_json:
        dump_json(result)
        return
    was = result["was_suppressed"] or "not suppressed"
    verb = "would be" if dry_run else "is"
    done = (
        f"{verb} active again"
        if result["was_suppressed"] or result["status_before"] != "active"
        else f"{'would keep' if dry_run else 'keeps'} being mailed"
    )
    click.echo(
        f"{result['email']} ({was}, status {result['status_before']}) {done}; consent {consent} "
        f"from {result['consent_source']}" + (" — dry run, nothing written" if dry_run else "")
    )
    if result["warning"]:
        click.echo(f"warning: {result['warning']}", err=True)


@click.command("erase")
@click.argument("email")
@click.option("--dry-run", is_flag=True, help="Say what would be erased, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def erase_(app: App, email: str, dry_run: bool, as_json: bool) -> None:
    """Erase a person at their request (GDPR Art. 17 / 個人情報保護法 35条).

    \b
    Their name, company and every other personal field are emptied, their events lose IP, user
    agent, URL parameters and data, their mails lose subject and error text. Only the hash of the
    address is kept, on the suppression list, so no later import brings them back. Counts (sent,
    opened) stay for the reports. `prospects show EMAIL` then says they were erased.
    Files outside the database (outbox .eml files, your own exports) are not touched.
    """
    result = erase(app.engine(), email, dry_run=dry_run)
    if as_json:
        dump_json(result)
        return
    verb = "would be" if dry_run else "were"
    click.echo(
        f"{result['email']}: {result['outcome']}; {result['events_cleared']} event(s) and "
        f"{result['deliveries_cleared']} mail(s) {verb} cleared of personal data"
        + (" — dry run, nothing written" if dry_run else "")
    )


@click.group("suppressions")
def suppressions() -> None:
    """The suppression list: addresses never to mail."""


@suppressions.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--kind",
    type=_KIND,
    help="What the addresses are (default: from the file: Mailchimp's cleaned = bounced, unsubscribed = "
    "unsubscribed; SendGrid's bounces/blocks/invalid_emails = bounced, spam_reports = complained; else unsubscribed).",
)
@click.option("--reason", default="", help="A note kept with every suppression, e.g. 'from Mailchimp 2026-11'.")
@click.option("--encoding", help="Force the text encoding of a CSV (utf-8, utf-8-sig, cp932). Default: detected.")
@click.option("--sheet", help="The worksheet of an .xlsx file (default: the first).")
@click.option("--header-row", type=click.IntRange(min=1), metavar="N", help="The row holding the column names.")
@click.option("--dry-run", is_flag=True, help="Check and count, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def import_(
    app: App,
    file: str,
    kind: str | None,
    reason: str,
    encoding: str | None,
    sheet: str | None,
    header_row: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Load the suppression list of the tool you used before.

    \b
    Reads a plain list (one address per line), Mailchimp's unsubscribed or cleaned contacts
    export (column "Email Address"), SendGrid's suppression downloads (column "email"), or any
    CSV/XLSX with an address column (email, メールアドレス); a reason column is kept. Prospects
    among them are unsubscribed through an event; loading the same file again changes nothing.
    Addresses that are not valid are listed and skipped (they can never be mailed anyway).
    """
    summary, looks_like = import_suppressions(
        app.engine(),
        Path(file),
        kind=kind,
        reason=reason,
        encoding=encoding,
        sheet=sheet,
        header_row=header_row,
        dry_run=dry_run,
    )
    if as_json:
        data = summary.as_dict() | {"detected_as": looks_like}
        dump_json(data)
        return
    click.echo(f"{file}: read as {summary.kind} ({looks_like})")
    for bad in summary.invalid:
        click.echo(f'{file}: row {bad["row"]}: "{bad["value"]}" {bad["reason"]}: skipped', err=True)
    verb = "would be" if dry_run else "were"
    click.echo(
        f"{summary.new} address(es) {verb} suppressed ({summary.prospects} of them prospects), "
        f"{summary.already} already suppressed"
        + (f", {summary.repeated} repeated" if summary.repeated else "")
        + (f", {len(summary.invalid)} not valid (skipped)" if summary.invalid else "")
        + (" — dry run, nothing written" if dry_run else "")
    )


COMMANDS = [suppress_, unsuppress_, erase_, suppressions]
