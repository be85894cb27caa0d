"""nurture.core.clock: NURTURE_NOW is read on every call, so a change of the environment takes effect at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nurture.core import clock


def test_nurture_now_set_and_unset_in_process(monkeypatch):
    monkeypatch.delenv("NURTURE_NOW", raising=False)
    assert not clock.is_frozen()
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
    monkeypatch.setenv("NURTURE_NOW", "2026-11-24T10:00:00+09:00")
    assert clock.is_frozen()
    assert clock.now() == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    monkeypatch.setenv("NURTURE_NOW", "2027-01-04T09:30:00")  # naive: read as UTC
    assert clock.now() == datetime(2027, 1, 4, 9, 30, tzinfo=UTC)
    monkeypatch.delenv("NURTURE_NOW")
    assert not clock.is_frozen()
    assert clock.now().year >= 2026


def test_frozen_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("NURTURE_NOW", "2026-11-24T10:00:00+09:00")
    moment = datetime(2030, 5, 1, tzinfo=UTC)
    with clock.frozen(moment):
        assert clock.now() == moment
    assert clock.now() == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
