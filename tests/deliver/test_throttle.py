"""Throttle with a fake clock (deterministic), plus one real-thread check of the shared limit."""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import replace
from datetime import date, timedelta

import pytest

from nurture.core.config import ThrottleConfig, WarmupConfig
from nurture.core.errors import ConfigError
from nurture.deliver.throttle import DAY, HOUR, Throttle, ThrottleDeferred


class FakeClock:
    """Monotonic seconds that only move when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(clock: FakeClock, today=date(2026, 12, 1), **kw) -> Throttle:
    cfg = ThrottleConfig(**{"domains": {}, "default_domain_per_second": 0, **kw})
    return Throttle(cfg, clock=clock, sleep=clock.sleep, today=lambda: today)


def send_times(throttle: Throttle, clock: FakeClock, n: int, domain: str = "example.com") -> list[float]:
    times = []
    for _ in range(n):
        throttle.acquire(domain)
        times.append(clock.now)
    return times


def max_in_window(times: list[float], span: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - span:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_global_rate_spaces_sends_exactly():
    clock = FakeClock()
    t = make(clock, per_second=10)
    times = send_times(t, clock, 101)
    assert times[-1] - times[0] == pytest.approx(10.0, abs=0.011)  # 100 intervals of 0.1 s
    assert max_in_window(times, 1.0) <= 11
    assert t.sent == 101


def test_first_send_does_not_wait():
    clock = FakeClock()
    assert make(clock, per_second=1).acquire("example.com") == 0.0
    assert clock.sleeps == []


def test_per_domain_limit_applies_to_that_domain_only():
    clock = FakeClock()
    t = make(clock, per_second=100, domains={"docomo.ne.jp": 2.0}, default_domain_per_second=0)
    docomo = send_times(t, clock, 5, "DoCoMo.ne.jp")  # domains compare case-insensitively
    assert docomo[-1] - docomo[0] == pytest.approx(2.0, abs=0.011)
    start = clock.now
    send_times(t, clock, 5, "example.co.jp")  # unaffected by docomo's limit, only the global 100/s
    assert clock.now - start == pytest.approx(0.05, abs=0.011)


def test_default_domain_rate_for_unlisted_domains():
    clock = FakeClock()
    t = make(clock, per_second=100, domains={"gmail.com": 5.0}, default_domain_per_second=4.0)
    times = send_times(t, clock, 9, "corp.example.jp")
    assert times[-1] - times[0] == pytest.approx(2.0, abs=0.011)
    assert t.domain_rate("gmail.com") == 5.0 and t.domain_rate("corp.example.jp") == 4.0


def test_interleaved_domains_share_the_global_limit():
    clock = FakeClock()
    t = make(clock, per_second=4, default_domain_per_second=1.0)
    times = [clock.now for d in ["a.jp", "b.jp", "c.jp", "d.jp"] * 3 if t.acquire(d) is not None]
    assert max_in_window(times, 1.0) <= 5
    per_domain = {d: [times[i] for i in range(i0, 12, 4)] for i0, d in enumerate(["a.jp", "b.jp", "c.jp", "d.jp"])}
    for d, ts in per_domain.items():
        assert all(b - a >= 1.0 - 0.011 for a, b in itertools.pairwise(ts)), d


def test_check_says_which_limit_without_counting():
    clock = FakeClock()
    t = make(clock, per_second=100, domains={"docomo.ne.jp": 2.0})
    t.acquire("docomo.ne.jp")
    wait, why = t.check("docomo.ne.jp")
    assert wait == pytest.approx(0.49) and why == "domain docomo.ne.jp limit 2/s"
    assert t.check("example.co.jp") == (pytest.approx(0.005), "global limit 100/s")  # 10 ms minus 5 ms jitter
    assert t.sent == 1


def test_hourly_limit_is_a_sliding_window():
    clock = FakeClock()
    t = make(clock, per_second=1000, per_hour=100)
    times = send_times(t, clock, 250)
    assert max_in_window(times, HOUR) == 100
    assert times[99] - times[0] < 1  # the first hundred go at once
    assert times[100] - times[0] == pytest.approx(HOUR, abs=0.01)  # the 101st waits until the first ages out


def test_daily_limit_and_max_wait_defers_without_counting(caplog):
    clock = FakeClock()
    t = make(clock, per_second=1000, per_day=3)
    send_times(t, clock, 3)
    with (
        caplog.at_level(logging.INFO, logger="nurture.deliver.throttle"),
        pytest.raises(ThrottleDeferred, match="daily limit 3/day") as err,
    ):
        t.acquire("example.com", max_wait=60)
    assert err.value.wait == pytest.approx(DAY, abs=1)
    assert t.sent == 3
    assert t.try_acquire("example.com") > 0
    clock.now += DAY
    assert t.try_acquire("example.com") == 0.0


def test_waits_are_logged_with_the_reason(caplog):
    clock = FakeClock()
    t = make(clock, per_second=1000, domains={"gmail.com": 0.5})
    with caplog.at_level(logging.DEBUG, logger="nurture.deliver.throttle"):
        send_times(t, clock, 2, "gmail.com")
    (record,) = [r for r in caplog.records if r.name == "nurture.deliver.throttle"]
    assert record.levelno == logging.INFO  # a wait of 2 s is worth telling at INFO
    assert "domain gmail.com limit 0.5/s" in record.getMessage() and "waiting 1.990 s" in record.getMessage()


def test_warmup_grows_the_daily_cap():
    warm = WarmupConfig(enabled=True, start_date="2026-12-01", start_per_day=100, growth=1.5)
    for day, expected in [(0, 100), (1, 150), (2, 225), (10, 5766)]:
        t = make(FakeClock(), today=date(2026, 12, 1) + timedelta(days=day), per_second=1000, warmup=warm)
        assert t.daily_limit() == expected
    t = make(FakeClock(), today=date(2026, 11, 20), per_second=1000, warmup=warm)
    assert t.daily_limit() == 100  # before the start date: the first day's volume
    t = make(FakeClock(), today=date(2027, 6, 1), per_second=1000, per_day=20000, warmup=warm)
    assert t.daily_limit() == 20000  # once the ramp passes per_day, per_day rules


def test_warmup_blocks_with_its_own_reason():
    clock = FakeClock()
    warm = WarmupConfig(enabled=True, start_date="2026-12-01", start_per_day=5, growth=2)
    t = make(clock, today=date(2026, 12, 2), per_second=1000, warmup=warm)
    send_times(t, clock, 10)
    with pytest.raises(ThrottleDeferred, match="warm-up day 2: 10/day"):
        t.acquire("example.com", max_wait=0)


@pytest.mark.parametrize(
    "warm,match",
    [
        (WarmupConfig(enabled=True, start_date=""), "start_date"),
        (WarmupConfig(enabled=True, start_date="2026-13-01"), "start_date"),
        (WarmupConfig(enabled=True, start_date="2026-12-01", growth=0.5), "growth"),
    ],
)
def test_bad_warmup_settings_are_config_errors(warm, match):
    with pytest.raises(ConfigError, match=match):
        make(FakeClock(), warmup=warm)


def test_preload_counts_earlier_runs():
    clock = FakeClock()
    t = make(clock, per_second=1000, per_hour=10)
    t.preload([10.0] * 8 + [4000.0])  # 8 sends 10 s ago; one older than an hour does not count
    send_times(t, clock, 2)
    assert t.try_acquire("example.com") == pytest.approx(HOUR - 10, abs=0.01)


def test_idle_domain_meters_are_forgotten():
    clock = FakeClock()
    t = make(clock, per_second=1e9, default_domain_per_second=1.0)
    for i in range(8192):
        t.acquire(f"d{i}.example.jp")
        clock.now += 0.0005
    assert len(t._domains) < 8192  # pruned: memory stays bounded with many corporate domains


def test_threads_share_the_limit_with_a_real_clock():
    taken: list[float] = []

    class Recording(Throttle):
        def _take(self, now, domain):  # runs under the throttle's lock: the exact instants counted
            taken.append(now)
            super()._take(now, domain)

    t = Recording(ThrottleConfig(per_second=200, domains={}, default_domain_per_second=0))

    def worker():
        for _ in range(25):
            t.acquire("example.com")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(taken) == 100 and t.sent == 100
    assert taken == sorted(taken)
    # Never closer than the 5 ms interval minus the 2.5 ms jitter allowance, and 99 intervals in total.
    assert min(b - a for a, b in itertools.pairwise(taken)) >= 0.005 - 0.0025 - 1e-9
    assert taken[-1] - taken[0] >= 99 * 0.005 - 0.0025 - 1e-9


def test_zero_global_rate_is_refused_by_config():
    with pytest.raises(ValueError):
        replace(ThrottleConfig(), per_second=0)
