"""Log output for the commands: plain text (the default) or one JSON object per line for log collectors
(``nurture --log-format json ...`` or ``NURTURE_LOG_FORMAT=json``).

A JSON line carries ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and ``message``; the
``extra={...}`` fields of the call are added as they are (values JSON cannot hold become strings), and an
exception as ``exception`` (its formatted traceback). Japanese text is written as it is (UTF-8), not escaped.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")

#: Attributes every LogRecord has: anything else on a record came from ``extra=`` and is a field.
#: ``color_message`` is uvicorn's ANSI-coloured copy of the message: noise in a log collector.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            # The record's own wall-clock time: when the line was written, not the (possibly fixed) business clock.
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(fmt: str, *, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (default stderr) in ``fmt`` ("text" or
    "json"). Replaces the root logger's handlers, so calling it twice does not double the lines."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
