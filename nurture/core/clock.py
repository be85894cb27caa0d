"""Time as nurture sees it: always timezone-aware UTC, replaceable in tests.

Everything that asks "what time is it" calls :func:`now`. Tests (and ``--now`` on the CLI) fix it with
:func:`frozen`; ``NURTURE_NOW`` (ISO 8601) fixes it for a whole process, so subprocess tests can too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime

_fixed: datetime | None = None

# now() runs several times per mail. os.environ.get() of an unset variable raises and catches a KeyError inside
# Mapping.get (~1.5 us); the dict behind os.environ answers the same question in a plain lookup and is kept
# current by os.environ's own setters (monkeypatch.setenv included).
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey("NURTURE_NOW") if _ENV_DATA is not None else "NURTURE_NOW"


def _env_now() -> str | None:
    if _ENV_DATA is None:
        return os.environ.get("NURTURE_NOW")
    raw = _ENV_DATA.get(_ENV_KEY)
    return None if raw is None else os.environ.decodevalue(raw)


def parse_instant(text: str) -> datetime:
    """Parse ISO 8601; a naive value is taken as UTC."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now() -> datetime:
    """The current instant in UTC (fixed if a test or NURTURE_NOW says so)."""
    if _fixed is not None:
        return _fixed
    env = _env_now()
    if env:
        return parse_instant(env)
    return datetime.now(UTC)


def is_frozen() -> bool:
    """True when time does not pass (a test or NURTURE_NOW fixed it): waiting for it would wait forever."""
    return _fixed is not None or bool(_env_now())


def set_now(value: datetime | None) -> None:
    """Fix the clock at ``value`` (None releases it)."""
    global _fixed
    _fixed = None if value is None else value.astimezone(UTC)


@contextlib.contextmanager
def frozen(value: datetime) -> Iterator[None]:
    """Within the block, :func:`now` returns ``value``."""
    previous = _fixed
    set_now(value)
    try:
        yield
    finally:
        set_now(previous)
