"""What the commands print in common: JSON for scripts, and the all-or-nothing verdict of a file import."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from typing import Any

import click


def _json_default(value: Any) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def dump_json(data: Any) -> None:
    """Print JSON with Japanese kept readable (not \\u escapes); dates as ISO 8601."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=_json_default))


def import_verdict(
    file: str, rejected: list, *, skip_invalid: bool, as_json: bool, summary: dict[str, Any], verb: str
) -> None:
    """The shared end of `prospects import` and `events import`: with ``--json`` print the summary and exit
    (1 if rows were rejected without --skip-invalid); otherwise list every rejected row and, if that means
    nothing was written, exit 1 saying how to go on. Returns only when the caller should print its summary."""
    failed = bool(rejected) and not skip_invalid
    bad_rows = len({getattr(r, "row", id(r)) for r in rejected})  # a row with several bad cells is listed once each
    if as_json:
        dump_json(summary)
        sys.exit(1 if failed else 0)
    for row in rejected:
        click.echo(f"{file}: {row}", err=True)
    if failed:
        click.echo(
            f"error: {bad_rows} invalid row(s); nothing was {verb}ed.\n"
            f"  hint: fix the rows above, or pass --skip-invalid to {verb} the other rows",
            err=True,
        )
        sys.exit(1)
