"""CLI commands, one module per area. Each module exposes click commands; ALL lists what ``nurture`` shows."""

from __future__ import annotations

import importlib

import click

# Modules that may not exist yet while an area is being built are skipped, so the CLI keeps working.
_MODULES = ("setup", "prospects", "campaigns", "send", "serve", "events", "demo")

ALL: list[click.Command] = []
for _name in _MODULES:
    try:
        _module = importlib.import_module(f"nurture.commands.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"nurture.commands.{_name}":
            raise
        continue
    ALL.extend(getattr(_module, "COMMANDS", []))
