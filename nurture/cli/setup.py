"""``nurture init``: create or upgrade the database schema."""

from __future__ import annotations

import click

from nurture.cli.app import App, pass_app
from nurture.store import db


@click.command("init")
@pass_app
def init(app: App) -> None:
    """Create the database tables, or upgrade them to this version. Safe to run any number of times."""
    engine = app.engine(migrated=False)
    before, after = db.upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"database {where} is up to date (schema {after})")
    elif before is None:
        click.echo(f"created the nurture tables in {where} (schema {after})")
    else:
        click.echo(f"upgraded {where} from schema {before} to {after}")


COMMANDS = [init]
