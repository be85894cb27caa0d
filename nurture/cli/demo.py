"""``nurture demo``: a workspace with samples, sent end to end through the outbox sender."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import click

from nurture.cli import demo_engagement
from nurture.cli import workspace as demo_workspace
from nurture.cli.app import App
from nurture.cli.campaigns import check
from nurture.cli.events import import_ as events_import
from nurture.cli.prospects import import_, list_, won
from nurture.cli.report import report
from nurture.cli.send import send
from nurture.cli.setup import init
from nurture.core import clock
from nurture.report import KINDS


@click.command("demo")
@click.option(
    "--dir",
    "folder",
    default="nurture-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the demo workspace.",
)
@click.option("--no-send", is_flag=True, help="Prepare the workspace and import, but do not send.")
@click.pass_context
def demo(ctx: click.Context, folder: str, no_send: bool) -> None:
    """Create a demo workspace and run the main job in it.

    \b
    1. writes nurture.toml, sample campaigns (Japanese and English), templates and prospects.csv
    2. nurture init                       (SQLite database nurture.db)
    3. nurture prospects import prospects.csv
    4. nurture check                      (compliance footer + information-only content check)
    5. nurture send                       (outbox sender: .eml files in outbox/)
    6. four weeks of opens and clicks through the tracking server (people, mail gateways, prefetching),
       a seminar list (nurture events import), a win; then `nurture report ranks` and the HTML reports
    Running it again sends only what has become due: nothing is sent twice.
    """
    path = Path(folder).resolve()
    written = demo_workspace.create_workspace(path)
    click.echo(click.style(f"demo workspace: {path}", bold=True))
    if written:
        click.echo(f"  wrote {', '.join(written)}")
    previous = os.getcwd()
    os.chdir(path)  # the workspace's relative paths (nurture.db, outbox/) resolve here, as for a user in it
    try:
        _run(ctx, path, no_send)
    finally:
        os.chdir(previous)


def _run(ctx: click.Context, path: Path, no_send: bool) -> None:
    ctx.obj = App(str(path / "nurture.toml"), None)

    def step(title: str, command: click.Command, *args: str) -> None:
        click.echo(click.style(f"\n$ nurture {title}", fg="cyan", bold=True))
        try:
            ctx.invoke(command, *args) if not args else command.main(list(args), obj=ctx.obj, standalone_mode=False)
        except (SystemExit, click.exceptions.Exit) as exc:  # non-zero on findings: the demo goes on, says so
            code = getattr(exc, "code", None) or getattr(exc, "exit_code", 0)
            if code:
                click.echo(f"  (exit code {code})")

    step("init", init)
    step("prospects import prospects.csv", import_, "prospects.csv")
    step("prospects list", list_, "--limit", "20")
    step("check", check)
    if no_send:
        return
    step("send", send)
    _engagement(ctx, path, step)
    outbox = path / "outbox"
    mails = sorted(outbox.glob("*.eml")) if outbox.exists() else []
    click.echo(click.style("\nWhat was written where", bold=True))
    click.echo(f"  database       {path / 'nurture.db'}  (prospects, deliveries, events)")
    click.echo(f"  mails          {outbox}/  ({len(mails)} .eml files; open one in a mail program)")
    click.echo(f"  campaigns      {path / 'campaigns'}/  (edit, then `nurture check`)")
    click.echo(f"  preview        cd {path} && nurture preview mfg-insights --out preview.html")
    click.echo(f"  tracking       cd {path} && nurture serve   (opens, clicks, unsubscribe pages)")
    click.echo(f"  reports        {path / 'reports'}/  (HTML, open in a browser; `nurture report --help`)")


def _engagement(ctx: click.Context, path: Path, step: Callable[..., None]) -> None:
    """Four weeks of opens and clicks through the tracking server, a seminar list, a win; then the reports."""
    app: App = ctx.obj
    engine = app.engine()
    if demo_engagement.already_simulated(engine):
        click.echo(click.style("\n(engagement already simulated in this workspace: reports only)", fg="cyan"))
        end = None
    else:
        click.echo(
            click.style("\n$ (4 weeks pass: readers open and click through the tracking server)", fg="cyan", bold=True)
        )
        end = demo_engagement.simulate(engine, app.config, path, click.echo)
    try:
        if end is not None:
            step("events import seminar.csv", events_import, "seminar.csv")
            step(
                "prospects won takahashi.jiro@example.jp --amount 1800000",
                won,
                "takahashi.jiro@example.jp",
                "--amount",
                "1800000",
            )
        step("report ranks", report, "ranks", "--limit", "15")
        reports = path / "reports"
        reports.mkdir(exist_ok=True)
        for kind in KINDS:
            report.main(
                [kind, "--format", "html", "--out", str(reports / f"{kind}.html")], obj=ctx.obj, standalone_mode=False
            )
    finally:
        clock.set_now(None)


COMMANDS = [demo]
