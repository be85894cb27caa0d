"""The webhook pipeline every provider shares: verify -> parse -> normalise, then the web app records the events
with :func:`nurture.track.record_events`.

A provider subclasses :class:`Webhook` and fills three hooks; the base class owns the order and the errors.
:class:`WebhookRejected` carries the HTTP status to answer: 403 for a bad or stale signature (the provider
must not think it delivered), 400 for a body that is not what the provider sends. Anything else (a database
outage) becomes a 5xx in the web app, so the provider retries later — providers retry for hours and
deduplication makes a retry harmless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nurture.track.vocabulary import NewEvent


class WebhookRejected(Exception):
    """The request is refused; ``status`` is the HTTP status to answer, ``str()`` says why (for the log)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Webhook:
    """One provider's event webhook. Subclasses set ``name`` and implement the three hooks."""

    name = ""

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise WebhookRejected(403) unless the request is authentic and fresh. ``body`` is the raw body."""
        raise NotImplementedError(f"{type(self).__name__}.verify")

    def parse(self, body: bytes) -> list[dict[str, Any]]:
        """The provider's events as dicts; WebhookRejected(400) for a body the provider would not send."""
        raise NotImplementedError(f"{type(self).__name__}.parse")

    def normalise(self, raw: dict[str, Any]) -> NewEvent:
        """One provider event in nurture's vocabulary; unknown types become ``unknown`` with ``data["raw"]``."""
        raise NotImplementedError(f"{type(self).__name__}.normalise")

    def events(self, headers: Mapping[str, str], body: bytes) -> list[NewEvent]:
        """verify -> parse -> normalise. Raises WebhookRejected."""
        self.verify(headers, body)
        return [self.normalise(raw) for raw in self.parse(body)]
