"""The session's clock shift (``NURTURE_TEST_CLOCK_SHIFT``) moves every wall-clock reading nurture makes, in this
process and in the ones the tests start, and no duration. Without a shift the same checks expect an offset of 0."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
import time_machine

from clockshift import parse_shift, requested_shift
from nurture.compose.message import OutgoingMessage, build_mime
from nurture.core import clock


def real_time() -> float:
    return time_machine.escape_hatch.time.time() if time_machine.escape_hatch.is_travelling() else time.time()


@pytest.mark.parametrize(
    "text, seconds",
    [("730d", 730 * 86_400), ("+3650d", 3650 * 86_400), ("-12h", -43_200), ("90m", 5_400), ("45s", 45), ("7", 7)],
)
def test_parse_shift(text, seconds):
    assert parse_shift(text) == seconds


@pytest.mark.parametrize("text", ["", "2y", "730 days", "1.5d"])
def test_parse_shift_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError, match=r"e\.g\. 730d"):
        parse_shift(text)


def test_what_nurture_reads_is_shifted(monkeypatch):
    monkeypatch.delenv("NURTURE_NOW", raising=False)
    msg = OutgoingMessage(
        delivery_id=1,
        campaign="c",
        to_address="a@example.com",
        from_address="news@example.com",
        subject="s",
        html="<p>h</p>",
        text="h",
    )
    date_header = email.message_from_bytes(build_mime(msg), policy=email.policy.default)["Date"].datetime
    expected = real_time() + requested_shift()
    for reading in (
        clock.now().timestamp(),
        datetime.now(UTC).timestamp(),
        time.time(),
        date_header.timestamp(),
        time.clock_gettime(time.CLOCK_REALTIME),
    ):
        assert reading == pytest.approx(expected, abs=5)


def test_durations_sleeps_and_timed_waits_run_in_real_time():
    start, real_start = time.monotonic(), real_time()
    time.sleep(0.01)  # libfaketime with FAKETIME_DONT_FAKE_MONOTONIC=1 raises EINVAL here (#426)
    waited = threading.Thread(target=threading.Event().wait, args=(0.2,), daemon=True)
    waited.start()
    waited.join(10)  # libfaketime 0.9.10 never returns from the timed wait (#390)
    assert not waited.is_alive()
    assert 0.2 <= time.monotonic() - start < 5 and 0.2 <= real_time() - real_start < 5


def test_child_processes_get_the_same_shift():
    # Stripped of NURTURE_* as the subprocess tests do (tests/deliver/test_sending.py, tests/web/test_web.py).
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    code = "from nurture.core import clock; print(clock.now().timestamp())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert float(out) == pytest.approx(real_time() + requested_shift(), abs=10)
