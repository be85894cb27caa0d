"""``nurture init``: create or upgrade the database schema, and (``--samples``) start a workspace from the
sample campaigns and templates."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from nurture.cli import workspace
from nurture.cli.app import App, pass_app
from nurture.core import config as configuration
from nurture.plan.campaigns import campaign_files, display_path
from nurture.store import db


@click.command("init")
@click.option(
    "--samples/--no-samples",
    default=None,
    help="Copy the sample campaigns and templates into this workspace (and config.example.toml as "
    "nurture.toml when there is no config yet); existing files are kept. Without either flag, init asks "
    "when run in a terminal and the workspace has no campaign yet.",
)
@pass_app
def init(app: App, samples: bool | None) -> None:
    """Create the database tables, or upgrade them to this version. Safe to run any number of times.

    \b
    In an empty folder:
      nurture init --samples     nurture.toml, campaigns/ and templates/ from the samples, then the database
    """
    config_file = configuration.find_config_file(app.config_path)
    if samples is None and config_file is None and sys.stdin.isatty():
        samples = click.confirm("No nurture.toml and no campaigns here. Copy the sample workspace?", default=True)
    if samples and config_file is None:  # written first, so that the folders it names are the ones used
        written = workspace.copy_samples(Path.cwd() / configuration.DEFAULT_FILE)
        click.echo(f"wrote {written[0]} from config.example.toml: set [identity] before a real send")
    config = app.config
    if samples is None and not campaign_files(config) and sys.stdin.isatty():
        samples = click.confirm(
            f"{display_path(config.campaigns_dir)} has no campaign. Copy the sample campaigns and templates?",
            default=True,
        )
    if samples:
        copied = workspace.copy_samples(None, config.campaigns_dir, config.templates_dir)
        click.echo(
            f"copied {len(copied)} sample files into {display_path(config.campaigns_dir)}/ and "
            f"{display_path(config.templates_dir)}/ (existing files kept)"
            if copied
            else "the sample files are already here"
        )
    engine = app.engine(migrated=False)
    before, after = db.upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"database {where} is up to date (schema {after})")
    elif before is None:
        click.echo(f"created the nurture tables in {where} (schema {after})")
    else:
        click.echo(f"upgraded {where} from schema {before} to {after}")
    if not campaign_files(config):
        click.echo(
            f"no campaign in {display_path(config.campaigns_dir)}/ yet: `nurture init --samples` copies the "
            "samples (Japanese manufacturing news, an English ops digest); the format is in campaigns/README.md"
        )


COMMANDS = [init]
