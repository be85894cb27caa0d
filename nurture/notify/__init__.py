"""Telling people: the notice to sales when a prospect is handed over (mail through the configured sender and/or
a JSON webhook, retried until delivered, exactly once across processes, escalated when nobody acknowledges), the
verdicts sales records (``nurture handoffs ack|reject``), and the weekly digest each owner gets.

Modules: ``notices`` (the outbox pass over ``handoffs``), ``facts`` (what a notice says), ``render`` + ``texts`` +
``templates/`` (ja/en mail parts), ``channels`` (mail, webhook), ``owners`` (owner -> address, language),
``handoffs`` (list, verdicts), ``digest`` (the weekly mail; its queries are in
:mod:`nurture.report.owner_digest`).

May import (layers in pyproject.toml): ``deliver``, ``report``, ``postal`` and everything below them.
"""

from nurture.notify.digest import DigestMail, run_digest
from nurture.notify.handoffs import decide, list_handoffs
from nurture.notify.notices import PassReport, notify_due

__all__ = ["DigestMail", "PassReport", "decide", "list_handoffs", "notify_due", "run_digest"]
