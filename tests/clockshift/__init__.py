"""Run the test suite with the wall clock moved: ``NURTURE_TEST_CLOCK_SHIFT=730d pytest`` (registered in conftest.py).

Why: tests fix nurture's clock (``clock.frozen``, ``clock.set_now``, ``NURTURE_NOW``) and never depend on today's
date -- but a hard-coded date that must lie in the future, or a wall-clock reading next to a fixed date, passes
until the calendar reaches it and then fails on every run (test_sendgrid_sender_end_to_end, 2026-11-24). Running
the suite with the clock years ahead finds those time bombs first; ``.ci/run`` does it on every run.

How: time-machine moves the wall clock of the test process by the shift for the whole session and lets it tick
(``tick=True``): it patches ``time.time``/``time_ns``, ``time.clock_gettime(CLOCK_REALTIME)``, ``gmtime``,
``localtime``, ``strftime``, ``datetime.now``/``utcnow`` and ``date.today``, in every thread. That is everything
nurture reads: ``clock.now()`` falls back to ``datetime.now(UTC)``; mail ``Date`` headers, throttle warm-up days,
SendGrid's rate-limit and webhook-age arithmetic all go through ``clock.now()``. Monotonic clocks, sleeps and timed
waits are not touched, so the throttle, timeouts and the tracking server's flush interval behave as always.

Why not libfaketime: Debian's 0.9.10 (``faketime -f '+730d' pytest``) makes Python 3.11's timed waits never
return (``threading.Event().wait(0.5)``: wolfcw/libfaketime#390, so the tracking server's event buffer never
flushes), and with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` makes ``time.sleep`` raise EINVAL (#426). A preloaded shim
fixing those two calls would be C to build and keep working on every machine; time-machine is a wheel in the
``test`` extra and works the same on Linux and macOS.

Child processes: the tests start ``python -m nurture`` (sender races and crashes, ``nurture serve``). The session
puts this folder first on ``PYTHONPATH``, where ``sitecustomize.py`` applies the same shift as the child's
interpreter starts, and passes the shift in ``_NURTURE_TEST_CLOCK_SHIFT_SECONDS``: outside the ``NURTURE_``
prefix on purpose, because those tests drop every ``NURTURE_*`` variable from the child's environment.

Limit: only Python code is shifted. Other programs (chromium, spamassassin, the PostgreSQL server) and C code in
this process (OpenSSL checking a certificate's dates, SQLite's CURRENT_TIMESTAMP) keep the real time, so a test
must not need them to agree with the Python clock -- and nurture must not read time from them.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

ENV = "NURTURE_TEST_CLOCK_SHIFT"
CHILD_ENV = "_NURTURE_TEST_CLOCK_SHIFT_SECONDS"
HOOK_FOLDER = Path(__file__).resolve().parent  # holds sitecustomize.py

_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1, "": 1}
_traveller: time_machine.travel | None = None
_environment = pytest.MonkeyPatch()


def parse_shift(text: str) -> int:
    """Seconds for ``730d``, ``+730d``, ``-12h``, ``90m``, ``45s`` or a bare number of seconds."""
    m = re.fullmatch(r"\s*([+-]?\d+)\s*([dhms]?)\s*", text)
    if m is None:
        raise ValueError("write it as a whole number with an optional unit d, h, m or s, e.g. 730d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def requested_shift() -> int:
    """The shift ``NURTURE_TEST_CLOCK_SHIFT`` asks for, in seconds: 0 when it is unset or empty."""
    return parse_shift(os.environ.get(ENV, "").strip() or "0")


def pytest_configure(config: pytest.Config) -> None:
    global _traveller
    try:
        seconds = requested_shift()
    except ValueError as exc:
        raise pytest.UsageError(f"{ENV}={os.environ[ENV]!r}: {exc}") from None
    if not seconds:
        return
    _traveller = time_machine.travel(time.time() + seconds, tick=True)
    _traveller.start()
    _environment.setenv(CHILD_ENV, str(seconds))
    _environment.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(HOOK_FOLDER), os.environ.get("PYTHONPATH")) if p))


def pytest_report_header(config: pytest.Config) -> str | None:
    if _traveller is None:
        return None
    return (
        f"clock shifted by {os.environ[ENV].strip()} ({ENV}): the wall clock reads "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, in child processes too"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    global _traveller
    if _traveller is not None:
        _traveller.stop()
        _traveller = None
        _environment.undo()
