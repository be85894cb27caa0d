"""Delivery by several forked sender processes (``[delivery] processes``): :class:`SenderProcesses`.

Python renders under one lock per process; processes use every core. Each process runs its own
:class:`~nurture.deliver.worker.Deliverer` on its own database connections; they share the work through the
same claims as separate runs would, and keep the configured rates together because each gets an even share of
every limit (:func:`share_rates`). Outcomes come back over a queue, in batches, and are counted into the parent's
report by a thread of the parent.

A process that fails reports its error before it ends. A NurtureError (a user's mistake: a refused login, a
broken setting) comes back as it is and the parent raises it. Anything else is a bug: the child logs it with its
traceback and sends the formatted traceback along, and the parent logs it too and raises
:class:`SenderProcessError` carrying it, so the traceback is not lost with the child.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import queue as queues
import threading
import traceback
from collections.abc import Callable
from typing import Any

from nurture.core.config import Config
from nurture.core.errors import ConfigError, NurtureError
from nurture.deliver.report import Outcome, Report
from nurture.deliver.worker import Deliverer
from nurture.plan.campaigns import Campaign
from nurture.store import db

log = logging.getLogger("nurture.deliver.processes")

OUTCOMES_PER_MESSAGE = 50  # outcomes pickled together: one queue message per 50 mails, not per mail


class SenderProcessError(RuntimeError):
    """A bug (not a NurtureError) ended a sender process. ``remote_traceback`` is the child's formatted
    traceback; ``str()`` includes it, so a crash report shows where the child failed."""

    def __init__(self, summary: str, remote_traceback: str) -> None:
        super().__init__(f"{summary}\n\nin the sender process:\n{remote_traceback}")
        self.summary = summary
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.summary, self.remote_traceback)


def share_rates(config: Config, processes: int) -> Config:
    """The configuration one of ``processes`` sender processes runs with: every rate split evenly, so that
    together they keep the configured limits (each process throttles on its own)."""
    t = config.throttle
    split = dataclasses.replace(
        t,
        per_second=t.per_second / processes,
        per_hour=-(-t.per_hour // processes) if t.per_hour else 0,
        per_day=-(-t.per_day // processes) if t.per_day else 0,
        default_domain_per_second=t.default_domain_per_second / processes,
        domains={d: r / processes for d, r in t.domains.items()},
        warmup=dataclasses.replace(t.warmup, start_per_day=max(1, t.warmup.start_per_day // processes)),
    )
    return dataclasses.replace(config, throttle=split)


def _portable(error: NurtureError) -> NurtureError:
    """``error`` if it survives the queue's pickling, else a plain NurtureError with its words."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return NurtureError(error.message, hint=error.hint)
    return error


def _deliver_child(
    config: Config, campaigns: dict[str, Campaign], limit: int | None, results: Any, planning: Any, stop: Any
) -> None:
    """A sender process: its own engine and Deliverer; outcomes and the final counts go back on ``results``."""
    db.dispose_all()  # connections inherited over fork belong to the parent
    report = Report()
    error: BaseException | None = None
    try:
        engine = db.engine_for(config.database_url)
        batch: list[Outcome] = []
        lock = threading.Lock()  # worker threads report concurrently

        def forward(outcome: Outcome) -> None:
            with lock:
                batch.append(outcome)
                if len(batch) >= OUTCOMES_PER_MESSAGE:
                    results.put(("outcomes", list(batch)))
                    batch.clear()

        Deliverer(
            engine, config, campaigns, report, limit=limit, on_outcome=forward, planning=planning, stop=stop
        ).run()
        if batch:
            results.put(("outcomes", list(batch)))
    except NurtureError as exc:  # the parent raises it, as a single process would
        error = _portable(exc)
    except BaseException as exc:  # a bug: keep its traceback, here and in the parent
        log.exception("sender process failed")
        error = SenderProcessError(
            f"a sender process failed: {type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc))
        )
    results.put(("done", {"paused": report.paused, "blocked": report.blocked}, error))


class SenderProcesses:
    """Delivery by ``[delivery] processes`` forked sender processes into ``report``.

    Same interface as :class:`~nurture.deliver.worker.Deliverer`: ``start()``, ``planning`` (set it when no
    more will be planned), ``stop()``, ``join()``. The processes are forked in ``start()``, before the caller
    plans, so they inherit no planning state. The memory sender is refused (ConfigError): what it keeps would
    end with the child processes.
    """

    def __init__(
        self,
        config: Config,
        campaigns: dict[str, Campaign],
        report: Report,
        *,
        limit: int | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        keep_outcomes: bool = False,
    ) -> None:
        if config.delivery.sender == "memory":
            raise ConfigError(
                f'{config.source}: [delivery] sender = "memory" keeps mails in this process, '
                f"but processes = {config.delivery.processes} would send from others",
                hint="set [delivery] processes = 1 with the memory sender",
            )
        import multiprocessing  # here, for start-up time: ~20 ms that runs with one process never need

        self.n = config.delivery.processes
        self.ctx = multiprocessing.get_context("fork")
        self.config, self.campaigns, self.report = config, campaigns, report
        self.limit, self.on_outcome, self.keep_outcomes = limit, on_outcome, keep_outcomes
        self.planning = self.ctx.Event()
        self._stopping = self.ctx.Event()
        self._results = self.ctx.Queue()
        self._procs: list[Any] = []
        self._reader: threading.Thread | None = None
        self._done = 0
        self._errors: list[BaseException] = []

    def start(self) -> None:
        shared = share_rates(self.config, self.n)
        db.dispose_all()
        share = None if self.limit is None else -(-self.limit // self.n)
        self._procs = [
            self.ctx.Process(
                target=_deliver_child,
                args=(shared, self.campaigns, share, self._results, self.planning, self._stopping),
                daemon=True,
            )
            for _ in range(self.n)
        ]
        for proc in self._procs:
            proc.start()
        self._reader = threading.Thread(target=self._read, name="nurture-send-outcomes", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        """Ask every sender process to stop after the mails in flight; their claims are released."""
        self._stopping.set()

    def _read(self) -> None:
        while self._done < self.n:
            try:
                message = self._results.get(timeout=1.0)
            except queues.Empty:  # check that the children still live
                if not any(p.is_alive() for p in self._procs):
                    break
                continue
            if message[0] == "outcomes":
                for outcome in message[1]:
                    self.report.count(outcome, keep=self.keep_outcomes)
                    if self.on_outcome:
                        self.on_outcome(outcome)
                continue
            self._done += 1
            for campaign, reason in message[1]["paused"].items():
                self.report.campaign_paused(campaign, reason)
            for campaign, reason in message[1]["blocked"].items():
                self.report.campaign_blocked(campaign, reason)
            error = message[2]
            if isinstance(error, SenderProcessError):
                log.error("a sender process failed:\n%s", error.remote_traceback)
            if error is not None:
                self._errors.append(error)

    def join(self) -> None:
        """Wait for every process and its outcomes. Raises the first error a process reported."""
        assert self._reader is not None
        while self._reader.is_alive():
            self._reader.join(0.2)
        for proc in self._procs:
            proc.join()
        if self._errors:
            raise self._errors[0]
        if any(p.exitcode for p in self._procs) and self._done < self.n:
            raise NurtureError("a sender process died; its claims are retried by the next run after the lease")


def deliver_in_processes(
    config: Config,
    campaigns: dict[str, Campaign],
    report: Report,
    *,
    limit: int | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    keep_outcomes: bool = False,
) -> None:
    """Deliver what is already planned with :class:`SenderProcesses` and wait for them."""
    processes = SenderProcesses(
        config, campaigns, report, limit=limit, on_outcome=on_outcome, keep_outcomes=keep_outcomes
    )
    processes.planning.set()
    processes.start()
    processes.join()
