"""The deliver phase: :class:`Deliverer` claims pending deliveries and sends them with worker threads.

Worker threads (``[throttle] concurrency``) claim batches of pending deliveries (:mod:`nurture.deliver.claims`).
A worker's first claim is small and later ones are sized to about CLAIM_SECONDS of its own pace (fast senders
claim more per transaction, throttled ones hold few rows). Each message is checked again (still mailable, inside
the send window), built (:class:`~nurture.deliver.builder.MessageBuilder`), throttled and handed to the sender;
outcomes are written ``[delivery] record_batch`` at a time (:mod:`nurture.deliver.outcomes`):

=============================  ==================================================================================
what happened                  delivery becomes
=============================  ==================================================================================
accepted                       ``sent`` (provider id, Message-ID, time)
temporary failure              ``pending`` again, ``next_attempt_at`` after exponential backoff (or the provider's
                               Retry-After / X-RateLimit-Reset); ``failed`` after ``max_attempts``
permanent failure              ``failed`` with the provider's words; a hard bounce also suppresses the address
ambiguous (timeout)            ``unknown``: never resent blindly; a provider webhook (``processed``) settles it
not mailable any more          ``skipped`` with the reason (e.g. unsubscribed between plan and send)
this mail cannot be built      ``failed`` ("render: ..."): header injection from the prospect's data, a template
                               variable this prospect lacks, a header line that cannot be folded to 998
                               characters, text that cannot be encoded
no mail of the campaign can    ``pending``: the campaign stops for this run (``Report.blocked``), its mails wait
be built                       for a fixed template. Counts against no error budget
the sender can send nothing    ``pending``: the run stops with the sender's SenderConfigError (login or API key
                               refused, TLS failing); every unsent mail waits for the next run
=============================  ==================================================================================

Where the line between the last three lies: a mail that fails to build is the prospect's fault when the same item
builds for the campaign check's sample prospect, and the campaign's (its files changed or broke since the check
passed) when it does not (:meth:`MessageBuilder.campaign_fault`). Configuration is never counted as one mail's
failure. The engine never asks which sender it has: a sender says what its failure means by the error it raises
(:mod:`nurture.deliver.senders.base`) and names the source of the bounce events it causes (``event_source``).

Crash safety: a process killed at any moment leaves its claimed rows ``pending`` under a lease; after the lease
(``[delivery] lease_seconds``) another run takes them. The only window for a repeat is a message the provider
accepted whose ``sent`` record was not yet committed when the process died: at most ``record_batch`` messages
per worker thread (1 = one). The outbox sender names files by delivery id, so even that repeat overwrites
rather than duplicates.

Too many failures in a row (``[delivery] error_budget``) pause the campaign (``campaign_states``) with the
reason; ``nurture resume CAMPAIGN`` lifts the pause. Failures are refusals (5xx), mails that cannot be built,
and mails given up after ``max_attempts``; a temporary answer (SMTP 4xx, HTTP 429) is the provider pacing us:
that mail backs off and waits, and the campaign goes on. One mail's failure never ends the run: whatever
building or encoding one mail raises fails that mail with the reason (a sender's unexpected error makes it
``unknown``, never resent blindly); only SenderConfigError and the database end a run.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from nurture import track
from nurture.core import clock
from nurture.core.config import Config
from nurture.core.errors import (
    AmbiguousSendError,
    NurtureError,
    PermanentSendError,
    SenderConfigError,
    SendError,
    TemporarySendError,
)
from nurture.deliver import claims
from nurture.deliver.builder import MessageBuilder
from nurture.deliver.outcomes import OutcomeWriter
from nurture.deliver.report import Outcome, Report
from nurture.deliver.senders import Sender, make_sender
from nurture.deliver.throttle import Throttle, ThrottleDeferred
from nurture.plan import cadence as calendar
from nurture.plan.campaigns import Campaign
from nurture.plan.planner import paused_campaigns
from nurture.plan.segments import mailable_reason
from nurture.store import db
from nurture.store.models import CampaignState
from nurture.store.states import AttemptOutcome, DeliveryState

log = logging.getLogger("nurture.deliver.worker")

#: A worker claims about CLAIM_SECONDS of work at a time, between CLAIM_MIN and CLAIM_MAX deliveries: fast
#: senders then pay for one claim transaction per ~100 mails, while slow or throttled ones hold few rows that
#: another worker could be sending.
CLAIM_MIN, CLAIM_MAX, CLAIM_SECONDS = 16, 128, 0.25
THROTTLE_MAX_WAIT = 2.0  # seconds a worker waits for one domain before deferring that message
IDLE_WAIT = 30.0  # a run waits this long at most for throttled or briefly deferred mail to become due
PLAN_POLL = 0.05  # while planning goes on, a worker with nothing to claim looks again this often (seconds)
MAX_BACKOFF = timedelta(hours=6)

#: The state a delivery takes when an attempt ends so; DEFERRED leaves it pending.
_STATE_AFTER = {
    AttemptOutcome.SENT: DeliveryState.SENT,
    AttemptOutcome.FAILED: DeliveryState.FAILED,
    AttemptOutcome.SKIPPED: DeliveryState.SKIPPED,
    AttemptOutcome.UNKNOWN: DeliveryState.UNKNOWN,
}


@dataclass
class _Lane:
    """What one worker thread holds for the whole run: its name (``claimed_by``), its connection (compiled
    statements are reused: per-message bookkeeping is what separates nurture from a bare smtplib loop,
    bench/send.py, so it is kept small), its sender, message builder and outcome writer."""

    worker: str
    conn: Connection
    sender: Sender
    builder: MessageBuilder
    out: OutcomeWriter


def _one_line(exc: NurtureError) -> str:
    return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")


def _describe(exc: BaseException) -> str:
    """One line for a failure of one mail: a NurtureError's message, else the exception's type and words."""
    if isinstance(exc, NurtureError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"[:500]


class Deliverer:
    """Claims pending deliveries of ``campaigns`` and sends them with ``[throttle] concurrency`` worker threads,
    counting every outcome into ``report`` (and passing it to ``on_outcome``, from the worker threads).

    ``planning``, when given, is an event that is set once no more deliveries will be planned in this run:
    until then a worker that finds nothing to claim waits for the next planned batch instead of ending.
    ``stop``, when given, is the event :meth:`stop` sets (a multiprocessing event lets a parent stop it).
    ``limit`` caps the deliveries claimed in this run. ``sender_factory`` makes one sender per thread.
    """

    def __init__(
        self,
        engine: Engine,
        config: Config,
        campaigns: dict[str, Campaign],
        report: Report,
        *,
        sender_factory: Callable[[Config], Sender] = make_sender,
        throttle: Throttle | None = None,
        limit: int | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        keep_outcomes: bool = False,
        planning: Any = None,
        stop: Any = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.campaigns = campaigns
        self.report = report
        self.sender_factory = sender_factory
        self.throttle = throttle or Throttle(config.throttle)
        self.limit = limit
        self.on_outcome = on_outcome
        self.keep_outcomes = keep_outcomes
        self.worker_prefix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = timedelta(seconds=config.delivery.lease_seconds)
        self._lock = threading.Lock()
        self._claimed_total = 0
        self._failures: Counter[str] = Counter()
        # Campaigns this run sends no more: paused by the error budget (now or before) or blocked by their files.
        self._stopped: set[str] = set(paused_campaigns(engine))
        self._stop = stop if stop is not None else threading.Event()  # another process may set it (forked senders)
        self._errors: list[BaseException] = []
        self._statements: dict[frozenset[str], db.Bulk] = {}  # one prepared UPDATE per shape of outcome
        self.planning = planning
        self._threads: list[threading.Thread] = []

    # -- claiming ------------------------------------------------------------------------------------------
    def _take_budget(self, wanted: int) -> int:
        with self._lock:
            if self.limit is None:
                return wanted
            n = max(0, min(wanted, self.limit - self._claimed_total))
            self._claimed_total += n
            return n

    def _sending(self) -> list[str]:
        return [c for c in self.campaigns if c not in self._stopped]

    def claim(self, conn: Connection, worker: str, n: int) -> list[int]:
        """Claim up to ``n`` due pending deliveries of the campaigns still being sent; their ids."""
        return claims.claim_due(conn, worker, self._sending(), n, self.lease)

    def _release(self, lane: _Lane, ids: list[int]) -> None:
        lane.out.flush()
        claims.release(lane.conn, lane.worker, ids)

    # -- one message ---------------------------------------------------------------------------------------
    def _outcome(self, outcome: Outcome) -> None:
        with self._lock:
            self.report.count(outcome, keep=self.keep_outcomes)
            if outcome.state == AttemptOutcome.SENT:
                self._failures[outcome.campaign] = 0
        if self.on_outcome:
            self.on_outcome(outcome)
        if outcome.state == AttemptOutcome.DEFERRED:
            log.info("deferred %s (%s): %s", outcome.email, outcome.campaign, outcome.reason)

    def _deliver_one(self, lane: _Lane, row: Any, suppressed: dict[str, str]) -> None:
        now = clock.now()
        campaign = self.campaigns[row.campaign]

        def finish(outcome: AttemptOutcome, reason: str, **values: Any) -> None:
            state = _STATE_AFTER.get(outcome)
            if state is not None:
                values["state"] = state
            lane.out.record(row.delivery_id, {"error": reason, **values})
            self._outcome(Outcome(row.delivery_id, row.campaign, row.email, outcome, reason))

        if row.campaign in self._stopped:
            self._release(lane, [row.delivery_id])
            return
        reason = mailable_reason(row, now, suppression=suppressed.get(row.email))
        if reason:
            return finish(AttemptOutcome.SKIPPED, reason)
        zone = ZoneInfo(row.time_zone or self.config.default_time_zone)  # the planner's rule: never the campaign's
        why_not_now = calendar.is_send_time(now.astimezone(zone), campaign.cadence)
        if why_not_now:
            later = calendar.next_send_time(now, campaign.cadence, zone)
            if later is None:
                return finish(AttemptOutcome.SKIPPED, f"no send time left in the campaign's calendar ({why_not_now})")
            return finish(AttemptOutcome.DEFERRED, why_not_now, next_attempt_at=later)
        item = campaign.find_item(row.item_key)
        if item is None:
            return finish(AttemptOutcome.SKIPPED, f"item {row.item_key} is no longer in {campaign.path.name}")
        try:
            msg = lane.builder.build(row.delivery_id, row, campaign, item)
        except Exception as exc:  # anything one mail's data can cause fails that mail, never the run
            if not isinstance(exc, NurtureError):  # not the user's mistake: keep where it happened
                log.exception("building delivery %s (%s) failed", row.delivery_id, row.campaign)
            fault = lane.builder.campaign_fault(campaign, item)
            if fault is not None:
                self._release(lane, [row.delivery_id])
                self._block(
                    row.campaign,
                    f"no mail of item {item.key} can be built: {_one_line(fault)}; its "
                    "mails stay pending: fix it, then run `nurture send` again",
                )
                return
            reason = f"render: {_describe(exc)}"
            finish(AttemptOutcome.FAILED, reason)
            self._count_failure(row.campaign, reason)
            return
        try:
            # Wait a little for a slow domain, not long: a worker stuck on one domain would hold back all
            # the others (head-of-line blocking). The message is retried when its domain allows it.
            self.throttle.acquire(msg.to_domain, max_wait=THROTTLE_MAX_WAIT)
        except ThrottleDeferred as exc:
            return finish(
                AttemptOutcome.DEFERRED,
                f"throttled: {exc.reason}",
                next_attempt_at=clock.now() + timedelta(seconds=exc.wait),
            )
        attempts = row.attempts + 1
        sent = dict(attempts=attempts, sender=lane.sender.name, message_id=msg.message_id, subject=msg.subject)
        # A SenderConfigError (this sender can send nothing) is not caught: it ends the run and the worker
        # releases its claims, this row's included.
        try:
            result = lane.sender.send(msg)
        except TemporarySendError as exc:
            return self._temporary(finish, row.campaign, attempts, exc)
        except PermanentSendError as exc:
            finish(AttemptOutcome.FAILED, f"provider refused: {exc.message}", **sent)
            self._count_failure(row.campaign, f"provider refused: {exc.message}")
            if exc.hard_bounce:
                track.record_event(
                    self.engine,
                    track.NewEvent(
                        type=track.BOUNCED,
                        occurred_at=clock.now(),
                        source=lane.sender.event_source,
                        delivery_id=row.delivery_id,
                        data={"bounce": "hard", "code": exc.code, "message": exc.message},
                    ),
                )
            return
        except AmbiguousSendError as exc:
            return finish(
                AttemptOutcome.UNKNOWN, f"unknown: {exc.message} (not resent; a provider webhook settles it)", **sent
            )
        except SendError as exc:  # a sender raising the base class: treat as temporary, never lose it
            return self._temporary(finish, row.campaign, attempts, TemporarySendError(exc.message, exc.code))
        except SenderConfigError:
            raise
        except NurtureError as exc:
            # Raised while the sender built the bytes (build_mime: a header line that cannot be folded to 998
            # characters, a value that cannot be encoded), before anything left: this mail fails, alone.
            finish(AttemptOutcome.FAILED, f"render: {_describe(exc)}", attempts=attempts)
            self._count_failure(row.campaign, f"render: {exc.message}")
            return
        except Exception as exc:
            # A sender's own bug: whether anything left is not known, so never resend it blindly.
            log.exception("sender %s failed on delivery %s", lane.sender.name, row.delivery_id)
            return finish(
                AttemptOutcome.UNKNOWN,
                f"unknown: the {lane.sender.name} sender failed unexpectedly ({_describe(exc)}); not resent",
                **sent,
            )
        finish(
            AttemptOutcome.SENT, "", **sent, sent_at=clock.now(), provider_message_id=result.provider_message_id or ""
        )

    # -- retry and error budget ----------------------------------------------------------------------------
    def _temporary(self, finish: Callable[..., None], campaign: str, attempts: int, exc: SendError) -> None:
        """A temporary failure: retry after exponential backoff (at least the provider's Retry-After, at most
        MAX_BACKOFF), which counts toward no error budget (a provider pacing us must not pause a campaign
        until a person resumes it); failed after ``max_attempts``, which counts as one failure."""
        if attempts >= self.config.delivery.max_attempts:
            reason = f"provider kept deferring: gave up after {attempts} attempts: {exc.message}"
            finish(AttemptOutcome.FAILED, reason, attempts=attempts)
        else:
            backoff = timedelta(seconds=self.config.delivery.retry_base_seconds * 2 ** (attempts - 1))
            if exc.retry_after:
                backoff = max(backoff, timedelta(seconds=exc.retry_after))
            reason = f"provider deferred: {exc.message}"
            finish(
                AttemptOutcome.DEFERRED,
                reason,
                next_attempt_at=clock.now() + min(backoff, MAX_BACKOFF),
                attempts=attempts,
            )
            return  # throttling (SMTP 4xx, HTTP 429) is the provider pacing us, not a broken campaign
        self._count_failure(campaign, reason)

    def _count_failure(self, campaign: str, reason: str) -> None:
        with self._lock:
            self._failures[campaign] += 1
            if self._failures[campaign] >= self.config.delivery.error_budget:
                self._pause(campaign, reason)

    def _pause(self, campaign: str, last_reason: str) -> None:
        """Pause ``campaign`` in ``campaign_states`` (it stays paused until ``nurture resume``)."""
        if campaign in self._stopped:
            return
        self._stopped.add(campaign)
        reason = (
            f"{self.config.delivery.error_budget} delivery failures in a row; last: {last_reason}. "
            f"Fix the cause, then run `nurture resume {campaign}`"
        )
        self.report.campaign_paused(campaign, reason)
        now = clock.now()
        with db.transaction(self.engine) as session:
            stmt = db.insert_for(self.engine, CampaignState.__table__).values(
                campaign=campaign, paused=True, paused_reason=reason, paused_at=now
            )
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["campaign"], set_={"paused": True, "paused_reason": reason, "paused_at": now}
                )
            )
        log.warning("campaign %s paused: %s", campaign, reason)

    def _block(self, campaign: str, reason: str) -> None:
        """Send no more of ``campaign`` in this run (nothing is recorded: the next run tries again)."""
        with self._lock:
            if campaign in self._stopped:
                return
            self._stopped.add(campaign)
        self.report.campaign_blocked(campaign, reason)
        log.warning("campaign %s stopped for this run: %s", campaign, reason)

    # -- workers -------------------------------------------------------------------------------------------
    def _worker(self, index: int) -> None:
        worker = f"{self.worker_prefix}:{index}"
        held: list[int] = []
        conn = self.engine.connect()
        out = OutcomeWriter(conn, worker, self.config.delivery.record_batch, self._statements)
        batch = CLAIM_MIN
        try:
            builder = MessageBuilder(self.config)
            with self.sender_factory(self.config) as sender:
                lane = _Lane(worker, conn, sender, builder, out)
                while not self._stop.is_set():
                    want = self._take_budget(batch)
                    # Whether planning was over before this claim looked: if it ends between an empty claim and
                    # the check below, its last batch was committed after the claim looked, so look once more.
                    planned_before = self.planning is None or self.planning.is_set()
                    ids = self.claim(conn, worker, want)
                    if len(ids) < want and self.limit is not None:
                        with self._lock:
                            self._claimed_total -= want - len(ids)
                    if not ids:
                        if not planned_before and self.planning is not None and self.planning.is_set():
                            continue
                        if self._wait_for_more(conn):
                            continue
                        return
                    held = list(ids)
                    claimed_at = clock.now()
                    started = time.monotonic()
                    rows, suppressed = claims.load_claimed(conn, ids)
                    for row in rows:
                        if self._stop.is_set():
                            return
                        if clock.now() - claimed_at > self.lease / 2:
                            out.flush()
                            still = claims.renew(conn, worker, held, self.lease)
                            claimed_at = clock.now()
                            if row.delivery_id not in still:
                                held.remove(row.delivery_id)
                                continue
                        self._deliver_one(lane, row, suppressed)
                        held.remove(row.delivery_id)
                    out.flush()
                    per_mail = (time.monotonic() - started) / len(ids)
                    batch = max(CLAIM_MIN, min(CLAIM_MAX, int(CLAIM_SECONDS / max(per_mail, 1e-6))))
        except BaseException as exc:  # surfaced by run(); our claims are released below
            self._errors.append(exc)
            self._stop.set()
        finally:
            try:
                conn.rollback()
                out.flush()  # the outcomes queued so far first
                claims.release(conn, worker, held)
            except Exception as exc:  # the database itself failed: the leases expire and the rows are retried
                # No traceback: the run's own error (raised by join()) says what failed; this is its echo.
                log.warning(
                    "could not release claims (%s); they expire after the lease",
                    str(exc).split("\n", 1)[0][:200],
                )
            conn.close()

    def _wait_for_more(self, conn: Connection) -> bool:
        """Nothing claimable now. While planning goes on, wait for its next batch. If a pending delivery
        becomes due within IDLE_WAIT seconds (a throttled domain, a short backoff), sleep until then and say
        so; otherwise the run is over."""
        if self.planning is not None and not self.planning.is_set():
            self.planning.wait(PLAN_POLL)
            return not self._stop.is_set()
        if clock.is_frozen():  # time does not pass: nothing would ever become due
            return False
        due_in = claims.next_due_in(conn, self._sending())
        if due_in is None or due_in > IDLE_WAIT:
            return False
        self._stop.wait(max(due_in, 0.05))
        return not self._stop.is_set()

    def run(self) -> None:
        """Deliver until nothing is claimable (or the limit is reached). Re-raises a worker's error."""
        self.start()
        self.join()

    def start(self) -> None:
        """Start the worker threads and return; :meth:`join` waits for them."""
        self._threads = [
            threading.Thread(target=self._worker, args=(i,), name=f"nurture-send-{i}", daemon=True)
            for i in range(self.config.throttle.concurrency)
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Ask the workers to stop after the mail each is sending; their claims are released."""
        self._stop.set()

    def join(self) -> None:
        """Wait until the workers are done. Re-raises a worker's error."""
        try:
            for t in self._threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self._stop.set()
            for t in self._threads:
                t.join()
            raise
        if self._errors:
            raise self._errors[0]
