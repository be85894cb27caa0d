"""What one sending run did: :class:`Report` (counters by reason, campaigns held back and why) and the
:class:`Outcome` of each delivery attempt.

One report is written by the planner (it is a :class:`nurture.plan.planner.PlanSink`), by the worker threads and,
with sender processes, by the thread reading their outcomes, all at once: every change goes through one lock.
``as_dict()`` is what ``nurture send --json`` prints.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from nurture.plan.planner import Decision
from nurture.store.states import AttemptOutcome, PlanOutcome


@dataclass
class Outcome:
    """The end of one delivery attempt in the deliver phase."""

    delivery_id: int
    campaign: str
    email: str
    state: AttemptOutcome
    reason: str = ""


@dataclass
class Report:
    """Everything one run did; counters by reason, plus the individual decisions and outcomes when asked for.

    ``paused``: campaigns the error budget paused (now or in an earlier run), with the reason; they stay paused
    until ``nurture resume``. ``blocked``: campaigns refused for this run only, their mails left pending: the
    campaign check failed before the run, or a configuration error (a template gone or broken) stopped them
    while sending. ``broken_files``: the ``file:line: problem`` lines of campaign files that could not be
    loaded and were skipped (the other campaigns were sent). ``notes``: campaigns left out for a reason of
    their own file.
    """

    planned: int = 0
    #: Prospects the planner did not look at: nothing can be due for them yet (nurture.plan.due; from the row
    #: estimate on PostgreSQL above 10,000 prospects).
    not_due: int = 0
    sent: int = 0
    deferred: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    paused: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    broken_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    dry_run: bool = False
    # The planner and the deliverers count into one report at the same time (delivery starts while planning
    # goes on): every change goes through this lock.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, outcome: Outcome, keep: bool = False) -> None:
        """Add one delivery outcome to the counters (and to ``outcomes`` when ``keep``)."""
        with self._lock:
            if outcome.state == AttemptOutcome.SENT:
                self.sent += 1
            else:
                self._counters[outcome.state][_category(outcome.reason)] += 1
            if keep:
                self.outcomes.append(outcome)

    def tally(self, decision: Decision, keep: bool = False) -> None:
        """Add one planning decision to the counters (and to ``decisions`` when ``keep``)."""
        with self._lock:
            if decision.outcome == PlanOutcome.SEND:
                self.planned += 1
            else:
                counter = self.deferred if decision.outcome == PlanOutcome.DEFERRED else self.skipped
                counter[_category(decision.reason)] += 1
            if keep:
                self.decisions.append(decision)

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def campaign_paused(self, campaign: str, reason: str) -> None:
        with self._lock:
            self.paused[campaign] = reason

    def waiting(self, count: int) -> None:
        with self._lock:
            self.not_due += count

    @property
    def skipped_campaigns(self) -> bool:
        """Whether a campaign or campaign file was left out of this run (blocked or broken)."""
        return bool(self.blocked or self.broken_files)

    def campaign_blocked(self, campaign: str, reason: str) -> None:
        with self._lock:
            self.blocked[campaign] = reason

    @property
    def _counters(self) -> dict[str, Counter[str]]:
        return {
            AttemptOutcome.DEFERRED: self.deferred,
            AttemptOutcome.FAILED: self.failed,
            AttemptOutcome.SKIPPED: self.skipped,
            AttemptOutcome.UNKNOWN: self.unknown,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "planned": self.planned,
            "not_due": self.not_due,
            "sent": self.sent,
            "deferred": dict(self.deferred),
            "skipped": dict(self.skipped),
            "failed": dict(self.failed),
            "unknown": dict(self.unknown),
            "paused_campaigns": self.paused,
            "blocked_campaigns": self.blocked,
            "broken_campaign_files": self.broken_files,
            "notes": self.notes,
            "decisions": [d.as_dict() for d in self.decisions],
            "outcomes": [
                {
                    "delivery": o.delivery_id,
                    "campaign": o.campaign,
                    "email": o.email,
                    "state": o.state,
                    "reason": o.reason,
                }
                for o in self.outcomes
            ],
        }


def _category(reason: str) -> str:
    """Reasons carry dates and names; the summary counts them by their leading words."""
    if reason.startswith("not due until"):
        return "not due yet"
    return reason.split(":")[0].split(" (")[0].strip()
