"""``nurture score``: recompute every prospect's score from its events, or show (``--dry-run``) who would change
rank or stage under the current or another rules file before anything is written."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from nurture import score
from nurture.cli.app import App, pass_app
from nurture.cli.output import dump_json
from nurture.score import rules as scoring_rules


@click.command("score")
@click.option("--dry-run", is_flag=True, help="Write nothing; list who would change rank or stage.")
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rules file to use instead of scoring.toml beside the config (e.g. a changed copy, with --dry-run).",
)
@click.option("--limit", type=int, default=50, show_default=True, help="Changes listed in the text output.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts and the full list as JSON.")
@pass_app
def score_command(app: App, dry_run: bool, rules_file: Path | None, limit: int, as_json: bool) -> None:
    """Recompute every prospect's score, rank, temperature and stage from the events.

    \b
    Online scoring keeps scores current as events arrive, and `nurture serve` runs the
    decay pass every few minutes; run this after changing scoring.toml (changes are
    recorded with cause "rules" and hand rank-A / SQL crossings to sales).

    \b
      nurture score --dry-run --rules new-scoring.toml     who would cross, nothing written
    """
    rules = scoring_rules.load(rules_file) if rules_file else scoring_rules.for_config(app.config)
    engine = app.engine()
    console = Console(stderr=True)
    show = not as_json and console.is_terminal
    with Progress(console=console, transient=True, disable=not show) as progress:
        task = progress.add_task("scoring", total=None)

        def step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = score.recompute(engine, rules, cause="rules", dry_run=dry_run, progress=step)
    data = {
        "dry_run": dry_run,
        "rules": rules.source,
        "rules_version": rules.version,
        "prospects": summary.prospects,
        "updated": 0 if dry_run else summary.updated,
        "would_update" if dry_run else "rescored": summary.updated,
        "handoffs": summary.handoffs,
        "counts": summary.counts(),
        "changes": [
            {
                "email": c.email,
                "field": c.field,
                "old": c.old,
                "new": c.new,
                "score_before": round(c.score_before, 2),
                "score_after": round(c.score_after, 2),
            }
            for c in summary.changes
        ],
    }
    if as_json:
        dump_json(data)
        return
    verb = "would change" if dry_run else "changed"
    click.echo(f"{summary.prospects} prospect(s) scored with {rules.source} (version {rules.version})")
    if not summary.changes:
        click.echo(f"nobody {verb} rank or stage")
    for name, n in summary.counts().items():
        click.echo(f"  {name}: {n}")
    if summary.changes:
        table = Table("email", "field", "old → new", "score", box=None)
        for c in summary.changes[:limit]:
            table.add_row(c.email, c.field, f"{c.old} → {c.new}", f"{c.score_before:.1f} → {c.score_after:.1f}")
        out = Console() if Console().is_terminal else Console(width=200)
        out.print(table)
        if len(summary.changes) > limit:
            click.echo(f"... and {len(summary.changes) - limit} more (--limit, --json)")
    if dry_run:
        click.echo("dry run: nothing written")
    else:
        click.echo(f"{summary.updated} prospect(s) updated, {summary.handoffs} handoff(s) to sales")


COMMANDS = [score_command]
