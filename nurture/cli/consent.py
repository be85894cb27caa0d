"""``nurture prospects consent EMAIL``, ``nurture consent export`` and ``nurture form snippet``.

The consent export is named apart from ``nurture report`` (another area owns that group): an auditor asks for
"every consent record since ...", as CSV (Excel opens it: UTF-8 with a BOM) or JSON lines.
"""

from __future__ import annotations

import csv
import html
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click

from nurture.cli.app import App, pass_app
from nurture.cli.output import dump_json
from nurture.core.errors import InputError, NurtureError
from nurture.people.consent import EXPORT_COLUMNS, consent_of, consent_rows
from nurture.plan.campaigns import campaign_files, load_campaign
from nurture.web.subscribe import wording_digest


@click.command("consent")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def prospects_consent(app: App, email: str, as_json: bool) -> None:
    """Show when and how EMAIL consented: the current basis, the topics chosen, and every consent record with its
    proof (form or import file and row or operator, IP, browser, the wording shown, the confirmation time)."""
    data = consent_of(app.engine(), email)
    if as_json:
        dump_json(data)
        return
    click.echo(f"{'email':14} {data['email']}")
    for key in ("status", "basis", "source", "at"):
        if data[key] not in (None, ""):
            click.echo(f"{key:14} {data[key]}")
    if data["topics"]:
        chosen = ", ".join(f"{t} ({'yes' if on else 'no'})" for t, on in data["topics"].items())
        click.echo(f"{'topics':14} {chosen}")
    for n, record in enumerate(data["records"], 1):
        click.echo(f"\nrecord {n}" + ("" if record.get("recorded") else " (from the prospect row; no record kept)"))
        for key in EXPORT_COLUMNS[2:]:
            value = record.get(key)
            if value not in (None, "", []):
                click.echo(f"  {key:13} {', '.join(value) if isinstance(value, list) else value}")


@click.group("consent")
def consent() -> None:
    """Consent records for audits (特定電子メール法: keep how and when each address consented)."""


@consent.command("export")
@click.option("--since", metavar="YYYY-MM-DD", help="Only consents given on or after this date (UTC).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@pass_app
def export(app: App, since: str | None, fmt: str, output: Path | None) -> None:
    """Every consent record (one row each: address, basis, when, source, IP, browser, wording, confirmation time,
    topics). CSV is UTF-8 with a BOM so Excel shows Japanese correctly; json prints one object per line."""
    start = None
    if since:
        try:
            start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        except ValueError:
            raise InputError(
                f"--since {since!r} is not a date", hint="write it as YYYY-MM-DD, e.g. 2026-01-01"
            ) from None
    rows = consent_rows(app.engine(), since=start)
    handle: TextIO = (
        output.open("w", encoding="utf-8-sig" if fmt == "csv" else "utf-8", newline="") if output else sys.stdout
    )
    count = 0
    try:
        if fmt == "csv":
            writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "topics": "; ".join(row["topics"])})
                count += 1
        else:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
    finally:
        if output:
            handle.close()
    if output:
        click.echo(f"{count} consent record(s) written to {output}", err=True)


@click.group("form")
def form() -> None:
    """The sign-up form for your own site."""


def snippet_html(app_config: Any, form_id: str, lang: str, topics: list[str]) -> str:
    """The embeddable form: posts to ``[tracking] base_url``/subscribe; a short script fetches a fresh form token
    (CORS, for ``[subscribe] allowed_origins``) so the minimum fill time counts from when the page was opened.
    Without JavaScript the post still arrives and the hosted page shows the filled-in form to send once more."""
    config = app_config
    base = config.tracking.base_url.rstrip("/")
    s = config.subscribe
    ja = lang == "ja"
    e = html.escape
    wording = s.consent_wording.get(lang) or next(iter(s.consent_wording.values()), "")

    def label(ja_text: str, en_text: str) -> str:
        return e(ja_text if ja else en_text)

    lines = [
        f'<form class="nurture-subscribe" method="post" action="{e(base)}/subscribe" accept-charset="utf-8" '
        f'data-nurture-form="{e(form_id)}">',
        f'  <input type="hidden" name="lang" value="{e(lang)}">',
        # Which consent wording this snippet shows: a post whose wording is no longer the configured one is asked
        # to confirm again on the hosted page (the consent record must hold what the person saw).
        f'  <input type="hidden" name="shown" value="{wording_digest(wording)}">',
        '  <input type="hidden" name="token" value="">',
        '  <div aria-hidden="true" style="position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden">',
        '    <label>Website <input type="text" name="website" tabindex="-1" autocomplete="off" value=""></label>',
        "  </div>",
        f"  <p><label>{label('メールアドレス（必須）', 'Email address (required)')}<br>"
        '<input type="email" name="email" required maxlength="254" autocomplete="email"></label></p>',
        f"  <p><label>{label('お名前', 'Name')}<br>"
        '<input type="text" name="name" maxlength="200" autocomplete="name"></label></p>',
        f'  <p><label>{label("会社名", "Company")}<br><input type="text" name="company" maxlength="200" '
        'autocomplete="organization"></label></p>',
        f'  <p><label>{label("役職", "Job title")}<br><input type="text" name="title" maxlength="200"></label></p>',
    ]
    if s.industries:
        options = "".join(f'<option value="{e(i)}">{e(i)}</option>' for i in s.industries)
        lines.append(
            f'  <p><label>{label("業種", "Industry")}<br><select name="industry"><option value="">'
            f"{label('選択してください', 'Choose one')}</option>{options}</select></label></p>"
        )
    if topics:
        lines.append(
            f"  <fieldset><legend>{label('受け取りたいテーマ', 'Topics you would like to hear about')}</legend>"
        )
        lines += [f'    <label><input type="checkbox" name="topic" value="{e(t)}"> {e(t)}</label><br>' for t in topics]
        lines.append("  </fieldset>")
    lines += [
        f"  <p><label>{label('知りたいこと・ご相談', 'What would you like to hear about?')}<br>"
        '<textarea name="text" rows="3" maxlength="1000"></textarea></label></p>',
        f'  <p><label><input type="checkbox" name="consent" value="yes" required> {e(wording)}</label></p>',
        f'  <p><button type="submit">{label("確認メールを送る", "Send the confirmation mail")}</button></p>',
        "</form>",
        "<script>",
        "(function () {",
        "  var forms = document.querySelectorAll('form.nurture-subscribe');",
        "  Array.prototype.forEach.call(forms, function (form) {",
        f"    fetch({json.dumps(base + '/subscribe/token?form=')} + encodeURIComponent(form.dataset.nurtureForm),",
        "          {credentials: 'omit'})",
        "      .then(function (r) { return r.json(); })",
        "      .then(function (d) { form.elements.token.value = d.token; })",
        "      .catch(function () {});  // no token: the hosted page asks to send once more",
        "  });",
        "})();",
        "</script>",
    ]
    return "\n".join(lines) + "\n"


@form.command("snippet")
@click.option("--form-id", default=None, help="Recorded as the consent source (default: [subscribe] form_id).")
@click.option("--lang", type=click.Choice(["ja", "en"]), default="ja", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@pass_app
def snippet(app: App, form_id: str | None, lang: str, output: Path | None) -> None:
    """Print the HTML of the sign-up form to paste into your own site's page. Add that site's origin to
    [subscribe] allowed_origins (the server refuses posts and token requests from other origins); the topics are
    those of the active campaign files now (print the snippet again when they change)."""
    config = app.config
    if not config.subscribe.enabled:
        raise InputError(
            f"{config.source}: [subscribe] enabled is false: the server would not accept this form",
            hint="set enabled = true in [subscribe] (and allowed_origins to your site) and restart nurture serve",
        )
    topics: set[str] = set()
    for path in campaign_files(config):
        try:
            campaign = load_campaign(path, config)
        except NurtureError:
            continue  # `nurture check` reports it; the snippet offers the topics of the files that load
        if campaign.topic and campaign.status == "active":
            topics.add(campaign.topic)
    text = snippet_html(config, form_id or config.subscribe.form_id, lang, sorted(topics))
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"snippet written to {output}", err=True)
    else:
        click.echo(text, nl=False)


COMMANDS = [consent, form]
