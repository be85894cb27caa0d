"""The ``nurture`` program: the group of :mod:`nurture.cli.app` with every command added, one module per area.

The command modules import :mod:`nurture.cli.app` (the group, the shared options); only this module imports the
command modules, so nothing in the CLI imports in a circle.
"""

from __future__ import annotations

import sys

import click

from nurture.cli import (
    campaigns,
    consent,
    demo,
    events,
    handoffs,
    operator,
    postal,
    prospects,
    report,
    score,
    send,
    serve,
    setup,
)
from nurture.cli.app import main

ALL: list[click.Command] = [
    *setup.COMMANDS,
    *prospects.COMMANDS,
    *operator.COMMANDS,
    *campaigns.COMMANDS,
    *send.COMMANDS,
    *serve.COMMANDS,
    *events.COMMANDS,
    *handoffs.COMMANDS,
    *score.COMMANDS,
    *report.COMMANDS,
    *demo.COMMANDS,
    *postal.COMMANDS,
    *consent.COMMANDS,
]
for _command in ALL:
    main.add_command(_command)
# `nurture prospects consent EMAIL` lives with the other consent commands (nurture.cli.consent).
prospects.prospects.add_command(consent.prospects_consent)

__all__ = ["ALL", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
