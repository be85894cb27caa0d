"""The ``nurture`` command line: parse -> call -> print. This module owns the group, the shared options and the
error boundary; commands live beside it, one module per area, and :mod:`nurture.cli.main` puts them together.

Every user mistake is a :class:`~nurture.core.errors.NurtureError`: printed as ``error: ...`` (with a hint),
exit code from the error (1, or 2 for configuration), never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from nurture import __version__, score
from nurture.core import config as configuration
from nurture.core import logs
from nurture.core.errors import NurtureError
from nurture.store import db
from nurture.track import set_source_window


class App:
    """What every command needs: the configuration (loaded on first use) and the database engine."""

    def __init__(self, config_path: str | None, database_url: str | None) -> None:
        self.config_path = config_path
        self.database_url = database_url
        self.log_format: str | None = None  # --log-format, when given: commands that start processes pass it on

    @cached_property
    def config(self) -> configuration.Config:
        config = configuration.load(self.config_path, database_url=self.database_url)
        # Every command that records events (send, events import, serve, forms) scores them with these rules.
        score.configure(config)
        return config

    def engine(self, *, migrated: bool = True) -> Engine:
        """The engine; with ``migrated`` (the default) a ConfigError unless ``nurture init`` has run."""
        engine = db.engine_for(self.config.database_url)
        # Events recorded by this command (imports, the demo's simulated hits) follow the configured bot rules.
        set_source_window(timedelta(minutes=self.config.tracking.source_window_minutes))
        if migrated:
            db.require_schema(engine)
        return engine


pass_app = click.make_pass_decorator(App)


class NurtureGroup(click.Group):
    """Turns NurtureError into a clean message and exit code; finds commands registered with :meth:`lazy` by name
    and imports their module when one is asked for (``nurture send`` from cron loads the sending stack, not the
    web server, the reports' charts and the spreadsheet readers too; ``nurture --help`` imports them all)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, Callable[[], click.Command]] = {}

    def lazy(self, name: str, load: Callable[[], click.Command]) -> None:
        """Register command ``name``, built by ``load()`` the first time it is needed."""
        self._lazy[name] = load

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self._lazy:
            self.add_command(self._lazy[cmd_name](), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except NurtureError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (OperationalError, InterfaceError, DBAPIError) as exc:
            if not (isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated):
                raise  # a refused statement is a bug: keep its traceback
            # The database went away (restarted, failed over, connection killed): not a bug, and nothing to
            # fix in nurture; say so in one line. Work in flight is safe (claims expire, transactions roll back).
            reason = str(getattr(exc, "orig", None) or exc).strip().split("\n", 1)[0][:300]
            click.echo(f"error: lost the database connection: {reason}", err=True)
            click.echo(
                "  hint: check that the database is up, then run the command again; a `nurture send` that "
                "stopped resumes where it was (mails not yet recorded are retried after [delivery] lease_seconds)",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=NurtureGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="NURTURE_CONFIG",
    help="Config file (default: ./nurture.toml; env NURTURE_CONFIG).",
)
@click.option(
    "--database",
    "database_url",
    metavar="URL",
    help="Database URL, overriding the config (e.g. postgresql+psycopg://user@host/db).",
)
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    envvar="NURTURE_LOG_FORMAT",
    help="Write logs to stderr as text or as one JSON object per line (time, level, logger, message and "
    "fields) for a log collector (env NURTURE_LOG_FORMAT). Default: warnings only, as text.",
)
@click.version_option(__version__, prog_name="nurture")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, database_url: str | None, log_format: str | None) -> None:
    """nurture: information-only newsletters that keep B2B prospects from forgetting you.

    \b
    Start here:
      nurture demo                      a demo workspace, sent end to end
      nurture init                      create/upgrade the database
      nurture prospects import FILE     load your Excel/CSV list
      nurture check                     validate campaigns and content
      nurture send --dry-run            who would get what, and why not
    """
    if log_format:
        logs.configure(log_format)
    ctx.obj = App(config_path, database_url)
    ctx.obj.log_format = log_format
