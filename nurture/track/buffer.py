"""Buffered recording for the tracking server: opens and clicks are queued in memory and written in batches.

The open pixel must never wait for the database, so request handlers only :meth:`EventBuffer.add`; one
background thread hands batches to :func:`nurture.track.record.record_events`. Events that change a prospect
(unsubscribes, preferences) and provider webhooks never go through a buffer: they are written before the answer.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine

from nurture.track.record import record_events
from nurture.track.vocabulary import NewEvent

log = logging.getLogger(__name__)


class EventBuffer:
    """Collects events from request handlers and records them in batches from one background thread.

    A batch is written every ``interval`` seconds or as soon as ``max_batch`` events wait (small batches keep
    the writer's hold on the GIL short, which keeps the pixel's p99 latency low). :meth:`close` flushes
    everything, so a clean shutdown loses nothing. If the process is killed (SIGKILL, power loss) the events
    of at most the last ``interval`` seconds (plus any backlog or what a failing database has held back) are
    lost — at 2,000 hits/s and 0.1 s, about 200 opens/clicks; unsubscribes never go through the buffer.
    If the database fails, the batch is kept and retried (up to ``max_pending`` events, then the oldest are
    dropped with an error in the log so memory stays bounded).

    :meth:`add` is safe from any thread and never blocks on the database.
    """

    def __init__(
        self, engine: Engine, *, interval: float = 0.1, max_batch: int = 250, max_pending: int = 200_000
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._pending: list[NewEvent] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recorded = 0
        self.dropped = 0

    def start(self) -> None:
        """Start the writer thread (once; a second call does nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nurture-event-buffer", daemon=True)
            self._thread.start()

    def add(self, event: NewEvent) -> None:
        """Queue ``event``; a full batch wakes the writer at once."""
        with self._lock:
            self._pending.append(event)
            full = len(self._pending) >= self.max_batch
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write what is pending now (in the caller's thread). Returns how many events were written."""
        written = 0
        while True:
            with self._lock:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            if not batch:
                return written
            try:
                record_events(self.engine, batch)
            except Exception as exc:  # SQL and its thousands of parameters stay out of the log
                log.error(
                    "recording %d events failed; keeping them for the next try: %s",
                    len(batch),
                    str(exc).split("\n", 1)[0][:300],
                )
                with self._lock:
                    self._pending[:0] = batch
                    overflow = len(self._pending) - self.max_pending
                    if overflow > 0:
                        del self._pending[:overflow]
                        self.dropped += overflow
                        log.error("event buffer full: dropped the %d oldest events", overflow)
                return written
            written += len(batch)
            self.recorded += len(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self.flush() == 0 and self._pending:
                time.sleep(self.interval)  # the database is failing: do not spin

    def close(self) -> None:
        """Stop the thread and write everything still pending."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    @property
    def pending(self) -> int:
        """Events queued and not yet written (``/healthz`` reports it)."""
        with self._lock:
            return len(self._pending)
