"""Sending rate limits: global per second / hour / day, per recipient domain, and a warm-up ramp.

One :class:`Throttle` is shared by the sending loop's worker threads. Before each send a worker calls
``throttle.acquire(domain)``, which blocks until every limit allows one more message and then counts it.

The limits and how each is kept:

* ``per_second`` (global) and per-domain rates (``[throttle] domains``, ``default_domain_per_second`` for
  every other domain; 0 = unlimited): a GCRA / virtual-scheduling meter (ITU-T I.371), i.e. a token bucket
  without a burst. Sends are spaced 1/rate apart; a send may come up to ``JITTER`` early so that sleep()
  overshoot is absorbed instead of accumulating, which keeps the long-run rate on target (bench/throttle.py).
* ``per_hour`` and ``per_day``: exact sliding windows (timestamps of the sends in the last hour/day), so no
  rolling hour ever holds more than ``per_hour`` sends -- a token bucket would allow twice that at the edge.
* warm-up (``[throttle.warmup]``): a new sending domain starts at ``start_per_day`` on ``start_date`` and
  may send ``growth`` times more each following day; it tightens the per-day window until it exceeds it.

Limits are per process. Across runs (cron) and processes, the loop passes the ages of recent sends from the
database to :meth:`Throttle.preload` so hourly/daily limits hold. The clock and sleep are injectable: tests
drive a fake clock. Waits are logged on the ``nurture.deliver.throttle`` logger with the limit that caused them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import date

from nurture.core import clock as nurture_clock
from nurture.core.config import ThrottleConfig
from nurture.core.errors import ConfigError, NurtureError

log = logging.getLogger("nurture.deliver.throttle")

JITTER = 0.010  # seconds a send may come early; absorbs sleep() overshoot (see module docstring)
HOUR, DAY = 3600.0, 86400.0


class ThrottleDeferred(NurtureError):
    """``acquire(..., max_wait=...)`` would have to wait longer than allowed. Nothing was counted."""

    def __init__(self, wait: float, reason: str) -> None:
        super().__init__(f"throttled for {wait:.0f} s more: {reason}")
        self.wait = wait
        self.reason = reason


class _Spacing:
    """GCRA: the theoretical arrival time ``tat`` of the next send advances 1/rate per send."""

    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.tolerance = min(JITTER, self.interval / 2)
        self.tat = -math.inf

    def wait(self, now: float) -> float:
        return max(0.0, self.tat - self.tolerance - now)

    def take(self, now: float) -> None:
        self.tat = max(self.tat, now) + self.interval

    def idle(self, now: float) -> bool:
        return self.tat <= now


class _Window:
    """At most ``limit`` sends in any ``span``-second sliding window."""

    __slots__ = ("limit", "span", "times")

    def __init__(self, span: float, limit: int) -> None:
        self.span, self.limit = span, limit
        self.times: deque[float] = deque()

    def wait(self, now: float, limit: int | None = None) -> float:
        limit = self.limit if limit is None else limit
        times = self.times
        while times and times[0] <= now - self.span:
            times.popleft()
        if len(times) < limit:
            return 0.0
        # The send that must leave the window first is the (len - limit + 1)-th oldest.
        return max(0.0, times[len(times) - limit] + self.span - now) if limit > 0 else self.span

    def take(self, now: float) -> None:
        self.times.append(now)


class Throttle:
    """Rate limits for one sending process; thread-safe. See the module docstring for the policy.

    ``clock`` returns monotonic seconds, ``sleep`` waits; ``today`` returns the current date for the
    warm-up (default: ``nurture.core.clock.now().date()``, UTC).
    """

    def __init__(
        self,
        throttle_config: ThrottleConfig,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        today: Callable[[], date] | None = None,
    ) -> None:
        self.config = throttle_config
        self.clock, self.sleep = clock, sleep
        self.today = today or (lambda: nurture_clock.now().date())
        self._lock = threading.Lock()
        self._global = _Spacing(throttle_config.per_second)
        self._hour = _Window(HOUR, throttle_config.per_hour) if throttle_config.per_hour > 0 else None
        warmup = throttle_config.warmup
        self._warmup_start: date | None = None
        if warmup.enabled:
            try:
                self._warmup_start = date.fromisoformat(warmup.start_date)
            except ValueError:
                raise ConfigError(
                    f"[throttle.warmup] start_date = {warmup.start_date!r} is not a date",
                    hint='write it as "2026-12-01" (the first day mail went out from the domain)',
                ) from None
            if warmup.start_per_day < 1 or warmup.growth < 1:
                raise ConfigError(
                    "[throttle.warmup] start_per_day must be >= 1 and growth >= 1 "
                    f"(got {warmup.start_per_day}, {warmup.growth})"
                )
        day_limit = throttle_config.per_day if throttle_config.per_day > 0 else 0
        self._day = _Window(DAY, day_limit) if (day_limit or self._warmup_start) else None
        self._domains: dict[str, _Spacing | None] = {}
        self._takes = 0
        self.sent = 0

    # ----------------------------------------------------------------------------------------- limits

    def daily_limit(self) -> int | None:
        """Sends allowed in a rolling day now: per_day, tightened by the warm-up ramp; None = unlimited."""
        limits = [self.config.per_day] if self.config.per_day > 0 else []
        if self._warmup_start is not None:
            days = max(0, (self.today() - self._warmup_start).days)
            w = self.config.warmup
            # Cap the exponent: after ~60 days of growth the ramp is irrelevant (and would overflow).
            limits.append(int(w.start_per_day * w.growth ** min(days, 200)) if w.growth > 1 else w.start_per_day)
        return min(limits) if limits else None

    def domain_rate(self, domain: str) -> float:
        """Sends per second allowed to ``domain`` (0 = no per-domain limit)."""
        return self.config.domains.get(domain, self.config.default_domain_per_second)

    def _domain(self, domain: str) -> _Spacing | None:
        if domain not in self._domains:
            rate = self.domain_rate(domain)
            self._domains[domain] = _Spacing(rate) if rate > 0 else None
        return self._domains[domain]

    def _check(self, now: float, domain: str) -> tuple[float, str]:
        """(seconds to wait, why) for one more send to ``domain``; (0, "") when allowed now."""
        waits = [(self._global.wait(now), f"global limit {self.config.per_second:g}/s")]
        spacing = self._domain(domain)
        if spacing is not None:
            waits.append((spacing.wait(now), f"domain {domain} limit {self.domain_rate(domain):g}/s"))
        if self._hour is not None:
            waits.append((self._hour.wait(now), f"hourly limit {self.config.per_hour}/h"))
        if self._day is not None:
            limit = self.daily_limit()
            assert limit is not None  # a day window exists only with per_day or a warm-up: both set a limit
            if self._warmup_start is not None and (not self.config.per_day or limit < self.config.per_day):
                days = max(0, (self.today() - self._warmup_start).days)
                why = f"warm-up day {days + 1}: {limit}/day"
            else:
                why = f"daily limit {limit}/day"
            waits.append((self._day.wait(now, limit), why))
        wait, why = max(waits, key=lambda w: w[0])
        return (wait, why) if wait > 0 else (0.0, "")

    def _take(self, now: float, domain: str) -> None:
        self._global.take(now)
        spacing = self._domain(domain)
        if spacing is not None:
            spacing.take(now)
        for window in (self._hour, self._day):
            if window is not None:
                window.take(now)
        self.sent += 1
        self._takes += 1
        if self._takes % 4096 == 0 and len(self._domains) > 4096:
            # B2B lists have thousands of corporate domains; an idle meter equals a fresh one, so forget it.
            self._domains = {d: s for d, s in self._domains.items() if s is not None and not s.idle(now)}

    # ----------------------------------------------------------------------------------------- API

    def check(self, domain: str) -> tuple[float, str]:
        """(seconds until a send to ``domain`` is allowed, which limit says so) without counting anything;
        (0.0, "") when allowed now. Lets the loop defer a message held back by a slow domain and take another
        recipient instead of blocking a worker (head-of-line blocking, see bench/throttle.py)."""
        with self._lock:
            return self._check(self.clock(), domain.lower())

    def try_acquire(self, domain: str) -> float:
        """Count one send to ``domain`` if every limit allows it now and return 0.0; otherwise count nothing
        and return the seconds until it may be allowed."""
        domain = domain.lower()
        with self._lock:
            now = self.clock()
            wait, _ = self._check(now, domain)
            if wait <= 0:
                self._take(now, domain)
            return wait

    def acquire(self, domain: str, max_wait: float | None = None) -> float:
        """Block until one send to ``domain`` is allowed, count it, and return the seconds waited.

        With ``max_wait``, raise :class:`ThrottleDeferred` (counting nothing) instead of waiting longer than
        that in total -- e.g. a daily limit reached in a cron run that should end rather than sleep for hours.
        """
        domain = domain.lower()
        start = self.clock()
        while True:
            with self._lock:
                now = self.clock()
                wait, why = self._check(now, domain)
                if wait <= 0:
                    self._take(now, domain)
                    return now - start
            if max_wait is not None and now - start + wait > max_wait:
                raise ThrottleDeferred(wait, why)
            log.log(
                logging.INFO if wait >= 1.0 else logging.DEBUG,
                "waiting %.3f s before sending to %s: %s",
                wait,
                domain,
                why,
            )
            self.sleep(wait)

    def preload(self, ages: Iterable[float]) -> None:
        """Count sends made before this process started (``ages`` = seconds ago, e.g. from deliveries'
        sent_at), so per-hour/per-day limits and the warm-up hold across runs."""
        with self._lock:
            now = self.clock()
            times = sorted(now - a for a in ages if 0 <= a < DAY)
            for window in (self._hour, self._day):
                if window is not None:
                    merged = sorted(list(window.times) + [t for t in times if t > now - window.span])
                    window.times = deque(merged)
