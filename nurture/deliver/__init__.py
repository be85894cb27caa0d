"""Delivery: sending the planned mails, each exactly once, at the configured rates, and recording what happened.

It owns the run (:mod:`~nurture.deliver.run`: the compliance gate, then plan and deliver at once), the claims on
pending deliveries (:mod:`~nurture.deliver.claims`), the worker threads and their retry and error-budget policy
(:mod:`~nurture.deliver.worker`), the writing of outcomes (:mod:`~nurture.deliver.outcomes`), forked sender
processes (:mod:`~nurture.deliver.processes`), the mail as sent (:mod:`~nurture.deliver.builder`), rate limits
(:mod:`~nurture.deliver.throttle`) and the senders (:mod:`~nurture.deliver.senders`: outbox, smtp, sendgrid,
memory). The run's :class:`Report` is :mod:`~nurture.deliver.report`.

It may import the packages below it (checks, compose, plan, people, score, track, store, core), never cli, web
or report; the planner it runs (:mod:`nurture.plan.planner`) knows nothing of it and reports through the
``PlanSink`` that :class:`Report` implements.
"""

from nurture.deliver.builder import MessageBuilder
from nurture.deliver.processes import SenderProcessError, SenderProcesses, deliver_in_processes
from nurture.deliver.report import Outcome, Report
from nurture.deliver.run import compliance_gate, pending_count, resume, send
from nurture.deliver.worker import Deliverer

__all__ = [
    "Deliverer",
    "MessageBuilder",
    "Outcome",
    "Report",
    "SenderProcessError",
    "SenderProcesses",
    "compliance_gate",
    "deliver_in_processes",
    "pending_count",
    "resume",
    "send",
]
