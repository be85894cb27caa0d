"""Background work that ``nurture serve`` does besides answering requests: each :class:`Job` runs every
``interval`` seconds in its own daemon thread, from server start to shutdown.

The jobs themselves live in the packages that own the work (the decay pass in :mod:`nurture.score`, notices to
sales in :mod:`nurture.notify`); this module only runs them. Add a job to :func:`jobs_for`. A job's exception is
logged and the job runs again at its next tick: one failing job never stops the server or the other jobs. Jobs
must be safe to run in several server processes at once (several uvicorn workers): each takes its own rows with
the database's locks or unique keys, never an in-process flag.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from nurture import score
from nurture.core.config import Config
from nurture.notify.notices import notify_due
from nurture.people.signup import purge_pending

log = logging.getLogger("nurture.serve")


@dataclass(frozen=True)
class Job:
    """``run(engine, config)`` every ``interval`` seconds (first run right after start)."""

    name: str
    interval: float
    run: Callable[[Engine, Config], object]


def jobs_for(config: Config) -> list[Job]:
    """The periodic jobs of a server with ``config``. Each package that needs one adds it here."""
    rules = score.rules.for_config(config)
    jobs = [
        # Notices to sales leave within one interval of the handoff (15 s by default: well inside the minute).
        Job("handoff-notices", config.handoff.interval_seconds, notify_due),
        Job("score-decay", rules.decay_every_minutes * 60, _decay),
    ]
    if config.subscribe.enabled:
        jobs.append(Job("signup-purge", 3600.0, lambda engine, _config: purge_pending(engine)))
    return jobs


def _decay(engine: Engine, config: Config) -> object:
    """The decay pass: rescore everyone at now with the configured rules; demotions become history ("decay").
    Safe in several processes: each chunk locks its rows, and rows already scored later are left alone."""
    return score.recompute(engine, score.current_rules(), cause="decay")


class Periodic:
    """Runs ``jobs`` on threads until :meth:`stop`."""

    def __init__(self, engine: Engine, config: Config, jobs: list[Job]) -> None:
        self.engine = engine
        self.config = config
        self.jobs = jobs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"nurture-{job.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, job: Job) -> None:
        while not self._stop.is_set():
            try:
                job.run(self.engine, self.config)
            except Exception:  # logged, retried at the next tick: a periodic job never takes the server down
                log.exception("periodic job %s failed; it runs again in %.0f s", job.name, job.interval)
            self._stop.wait(job.interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
