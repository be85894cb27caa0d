"""Structured logs: ``--log-format json`` writes one JSON object per line with time, level, logger, message and
the call's fields; Japanese stays readable; a traceback is one field, not extra lines."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pytest

from nurture.core import logs


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_time_level_logger_message_and_fields(restore_root):
    out = io.StringIO()
    logs.configure("json", stream=out)
    log = logging.getLogger("nurture.test")
    log.info("送信 %d 件", 3, extra={"sent": 3, "campaign": "製造業ニュース", "when": datetime(2026, 11, 24)})
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("it broke")
    log.debug("not at info level")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # the traceback stays inside its line
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "info" and first["logger"] == "nurture.test" and first["message"] == "送信 3 件"
    assert first["sent"] == 3 and first["campaign"] == "製造業ニュース" and first["when"] == "2026-11-24 00:00:00"
    assert datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0
    assert "製造業" in lines[0]  # UTF-8, not \\u escapes
    assert second["level"] == "error" and "ValueError: bad" in second["exception"]
    assert "Traceback" in second["exception"]


def test_configure_twice_does_not_double_lines_and_text_format_works(restore_root):
    out = io.StringIO()
    logs.configure("json", stream=out)
    logs.configure("text", stream=out)
    logging.getLogger("nurture.test").warning("once")
    assert out.getvalue().count("once") == 1 and "WARNING nurture.test: once" in out.getvalue()
    with pytest.raises(ValueError, match="log format"):
        logs.configure("xml")
