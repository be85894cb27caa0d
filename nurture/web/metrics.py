"""Prometheus metrics of the tracking server: ``GET /metrics`` (text exposition format).

==========================================  =======  ============================================================
metric                                      type     what
==========================================  =======  ============================================================
``nurture_tracking_requests_total``         counter  pixel (``path="open"``) and valid click (``"click"``)
                                                     requests answered by the hot path
``nurture_events_recorded_total``           counter  events this server wrote, by ``type`` and bot ``label``
                                                     (opens, clicks, unsubscribes, webhook events ...)
``nurture_webhook_batches_total``           counter  provider webhook batches by ``provider`` and ``outcome``
                                                     (recorded, refused, unusable, unrecordable, unavailable)
``nurture_event_buffer_pending``            gauge    opens and clicks queued in memory, not yet written
``nurture_deliveries``                      gauge    deliveries by ``state`` (pending, sent, failed, skipped,
                                                     unknown), read from the database at scrape time
``nurture_deliveries_deferred``             gauge    pending deliveries already tried (deferred by the provider
                                                     or the throttle, waiting for their next attempt)
==========================================  =======  ============================================================

Sends, failures and deferrals are counted from the ``deliveries`` table, not inside ``nurture send``: senders
are short runs from timers on several hosts, and the table is what they all share (no push gateway needed).
That query runs at most every :data:`DB_CACHE_SECONDS` per process, so a scrape costs one indexed GROUP BY.

Several uvicorn workers (``nurture serve --workers N``): each worker counts in its own process; with the
environment variable ``PROMETHEUS_MULTIPROC_DIR`` set (``nurture serve`` sets a fresh one for ``--workers`` > 1)
prometheus-client keeps the values in files there and every worker's ``/metrics`` answers the sum of all of them.

The hot path pays one plain integer increment per request (:class:`HotCounts`); events are counted per written
batch, by the buffer's writer thread (a listener of :func:`nurture.track.record_events`).
"""

from __future__ import annotations

import functools
import glob
import os
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine, case, func, select
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nurture.store.models import Delivery
from nurture.store.states import DeliveryState
from nurture.track import EventBuffer, add_listener

#: Read once, as prometheus-client does at import: multiprocess mode is decided before any metric exists.
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
DB_CACHE_SECONDS = 10.0

TRACKING_REQUESTS = Counter(
    "nurture_tracking_requests", "Pixel and valid click requests answered by the hot path.", ["path"]
)


class HotCounts:
    """What the hot path counts: plain integers, bumped only by the event loop's thread (``hits.opens += 1``,
    ~30 ns, where a prometheus-client ``inc()`` costs a lock, and in multiprocess mode an mmap write of a few
    µs). :func:`sync_hot_counts` moves them into ``nurture_tracking_requests_total``: at every scrape, and each
    second in multiprocess mode."""

    def __init__(self) -> None:
        self.opens = 0
        self.clicks = 0
        self._synced = (0, 0)
        self._lock = threading.Lock()

    def sync(self) -> None:
        with self._lock:
            opens, clicks = self.opens, self.clicks
            if opens > self._synced[0]:
                TRACKING_REQUESTS.labels("open").inc(opens - self._synced[0])
            if clicks > self._synced[1]:
                TRACKING_REQUESTS.labels("click").inc(clicks - self._synced[1])
            self._synced = (opens, clicks)


HITS = HotCounts()
TRACKING_REQUESTS.labels("open")  # both series exist (at 0) from the start
TRACKING_REQUESTS.labels("click")
EVENTS = Counter("nurture_events_recorded", "Events written by this server, by type and bot label.", ["type", "label"])
WEBHOOK_BATCHES = Counter(
    "nurture_webhook_batches", "Provider webhook batches received, by provider and outcome.", ["provider", "outcome"]
)
BUFFER_PENDING = Gauge(
    "nurture_event_buffer_pending",
    "Opens and clicks queued in memory, not yet written to the database.",
    multiprocess_mode="livesum",
)


def _count_events(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Listener of record_events: count a written batch by type and label (relabelled rows were counted when
    they were written)."""
    tally = Tally((row["type"], row.get("label") or "") for row in rows if not row.get("relabeled"))
    for (kind, label), n in tally.items():
        EVENTS.labels(kind, label).inc(n)


add_listener(_count_events)


class DeliveryCollector:
    """``nurture_deliveries{state}`` and ``nurture_deliveries_deferred`` from the database, cached for
    DB_CACHE_SECONDS. A database that does not answer leaves the metrics out (``/healthz`` says why)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._at = -DB_CACHE_SECONDS
        self._counts: dict[str, int] = {}
        self._deferred = 0

    def refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._at < DB_CACHE_SECONDS:
                return
            retried = case((Delivery.attempts > 0, 1), else_=0)
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(Delivery.state, func.count(), func.sum(retried)).group_by(Delivery.state)
                ).all()
            self._counts = {str(state): 0 for state in DeliveryState}
            self._deferred = 0
            for state, n, tried in rows:
                self._counts[str(state)] = n
                if state == DeliveryState.PENDING:
                    self._deferred = int(tried or 0)
            self._at = time.monotonic()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_state = GaugeMetricFamily("nurture_deliveries", "Deliveries by state (all senders).", labels=["state"])
        for state, n in sorted(self._counts.items()):
            by_state.add_metric([state], n)
        yield by_state
        yield GaugeMetricFamily(
            "nurture_deliveries_deferred", "Pending deliveries waiting for a retry.", value=self._deferred
        )


def watch_buffer(buffer: EventBuffer) -> None:
    """Report ``buffer``'s queue depth: read at scrape time in one process; in multiprocess mode (the value of
    another worker cannot be read at scrape time) written every second by a daemon thread."""
    if not MULTIPROC_DIR:
        BUFFER_PENDING.set_function(lambda: buffer.pending)
        return

    def update() -> None:
        while True:
            BUFFER_PENDING.set(buffer.pending)
            HITS.sync()
            time.sleep(1.0)

    threading.Thread(target=update, name="nurture-metrics-buffer", daemon=True).start()


def _forget_dead_workers() -> None:
    """Drop the live gauges of worker processes that are gone (a restarted uvicorn worker), so their last
    queue depth is not summed for ever."""
    from prometheus_client import multiprocess

    for path in glob.glob(os.path.join(MULTIPROC_DIR, "gauge_live*_*.db")):
        pid = os.path.basename(path).rsplit("_", 1)[-1].removesuffix(".db")
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), MULTIPROC_DIR)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exposition(deliveries: DeliveryCollector) -> bytes:
    HITS.sync()  # this process's hits up to now (the other workers' are at most a second old)
    if MULTIPROC_DIR:
        from prometheus_client import multiprocess

        _forget_dead_workers()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, MULTIPROC_DIR)
        own = generate_latest(registry)
    else:
        own = generate_latest(REGISTRY)
    try:
        deliveries.refresh()
    except Exception:  # the database is down: the other metrics still answer
        return own
    extra = CollectorRegistry(auto_describe=False)
    extra.register(deliveries)
    return own + generate_latest(extra)


async def metrics(deliveries: DeliveryCollector, request: Request) -> Response:
    body = await run_in_threadpool(_exposition, deliveries)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def routes(engine: Engine) -> list[Route]:
    """``GET /metrics`` reading deliveries through ``engine``."""
    return [Route("/metrics", functools.partial(metrics, DeliveryCollector(engine)), methods=["GET"])]
