"""The ``nurture`` program: the group of :mod:`nurture.cli.app` with every command added, one module per area.

The command modules import :mod:`nurture.cli.app` (the group, the shared options); only this module imports the
command modules, so nothing in the CLI imports in a circle. It imports them when their command is asked for
(:meth:`~nurture.cli.app.NurtureGroup.lazy`): importing all of them took 1.1 s of a no-op ``nurture send``.
"""

from __future__ import annotations

import importlib
import sys
from functools import partial

import click

from nurture.cli.app import main

#: Command name -> the module of nurture.cli that defines it (in that module's ``COMMANDS``).
WHERE: dict[str, str] = {
    "init": "setup",
    "prospects": "prospects",
    "suppress": "operator",
    "unsuppress": "operator",
    "erase": "operator",
    "suppressions": "operator",
    "check": "campaigns",
    "preview": "campaigns",
    "send": "send",
    "resume": "send",
    "serve": "serve",
    "events": "events",
    "handoffs": "handoffs",
    "digest": "handoffs",
    "score": "score",
    "report": "report",
    "demo": "demo",
    "postal": "postal",
    "consent": "consent",
    "form": "consent",
}


def _load(name: str) -> click.Command:
    module = importlib.import_module(f"nurture.cli.{WHERE[name]}")
    command: click.Command = next(c for c in module.COMMANDS if c.name == name)
    if name == "prospects" and isinstance(command, click.Group):
        # `nurture prospects consent EMAIL` lives with the other consent commands (nurture.cli.consent).
        from nurture.cli import consent

        command.add_command(consent.prospects_consent)
    return command


for _name in WHERE:
    main.lazy(_name, partial(_load, _name))


def all_commands() -> list[click.Command]:
    """Every top-level command, imported (for what walks the whole CLI: tests, documentation)."""
    ctx = click.Context(main)
    return [command for name in main.list_commands(ctx) if (command := main.get_command(ctx, name)) is not None]


__all__ = ["WHERE", "all_commands", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
