"""One vocabulary for where a delivery is and what happened to it, used by the planner, the senders, the tracking
server and the reports alike.

``StrEnum`` members are ``str``: they compare equal to the strings stored in ``deliveries.state`` and printed in
``--json`` output, so the database and every report keep the same words (no migration: the column stays a
string, as every vocabulary of :mod:`nurture.store.models` does).

::

    planner decides     PlanOutcome.SEND ──▶ row inserted as DeliveryState.PENDING
                        PlanOutcome.DEFERRED / SKIPPED: no row, a reason in the run report
    one attempt ends    AttemptOutcome.SENT      ──▶ DeliveryState.SENT
                        AttemptOutcome.DEFERRED  ──▶ DeliveryState.PENDING (next_attempt_at later)
                        AttemptOutcome.FAILED    ──▶ DeliveryState.FAILED (the provider's words)
                        AttemptOutcome.SKIPPED   ──▶ DeliveryState.SKIPPED (the reason)
                        AttemptOutcome.UNKNOWN   ──▶ DeliveryState.UNKNOWN (settled by a provider webhook)
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    """``deliveries.state``: every recipient ends sent, skipped-with-reason, failed-with-reason or unknown."""

    PENDING = "pending"  # planned, not yet accepted by a provider (maybe claimed, maybe waiting for a retry)
    SENT = "sent"  # the provider accepted it
    SKIPPED = "skipped"  # not sent, on purpose (unsubscribed since planning, item removed, ...): error says why
    FAILED = "failed"  # the provider refused it, or kept deferring it: error has the provider's words
    UNKNOWN = "unknown"  # a timeout after the request left: never resent; a provider webhook settles it


class AttemptOutcome(StrEnum):
    """What one delivery attempt came to (the run report counts these)."""

    SENT = "sent"
    DEFERRED = "deferred"  # stays pending: throttled, quiet hours, a temporary provider error
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


class PlanOutcome(StrEnum):
    """What the planner decided for one segment member of one campaign."""

    SEND = "send"  # a pending delivery is inserted
    DEFERRED = "deferred"  # due, but not now (the gap after another campaign's mail, quiet hours, a holiday)
    SKIPPED = "skipped"  # not due, not mailable, nothing left to send


#: States that count as "this prospect was (or is being) mailed" for the cadence.
MAILED_STATES: tuple[DeliveryState, ...] = (DeliveryState.SENT, DeliveryState.UNKNOWN, DeliveryState.PENDING)
#: States a delivery never leaves by itself (only a provider webhook moves UNKNOWN to SENT).
FINAL_STATES: tuple[DeliveryState, ...] = (DeliveryState.SENT, DeliveryState.SKIPPED, DeliveryState.FAILED)
